package engine

import (
	"os"
	"strings"
)

func init() {
	// EXEWALL_TEST_SABOTAGE=fold shows what folding prevents.
	for _, w := range strings.Split(os.Getenv("EXEWALL_TEST_SABOTAGE"), ",") {
		if w == "fold" {
			foldOff = true
		}
	}
}
