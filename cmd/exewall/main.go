// Command exewall is the per-executable network firewall: the daemon that
// enforces the policy and the CLI that changes it.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/exewall/exewall/cmd/exewall/internal/app"
)

func main() {
	if err := app.New().Run(os.Args); err != nil {
		// One line, whatever the error: scripts read the first line only.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintf(os.Stderr, "exewall: %s\n", msg)
		os.Exit(1)
	}
}
