// Command exewall is the per-executable network firewall: the daemon that
// enforces the policy and the CLI that changes it.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/exewall/exewall/cmd/exewall/internal/app"
	"github.com/exewall/exewall/cmd/exewall/internal/commands"
)

func main() {
	if err := app.New().Run(os.Args); err != nil {
		code := 1
		var ee *commands.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		// One line, whatever the error: scripts read the first line only.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		if msg != "" {
			fmt.Fprintf(os.Stderr, "exewall: %s\n", msg)
		}
		os.Exit(code)
	}
}
