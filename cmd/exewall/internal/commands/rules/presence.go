package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"
)

// notPresent reports an exe path with no file behind it (yet). Such a rule
// is kept and enforced as soon as the file appears (DESIGN.md), which is
// also what a typo looks like: the user is told either way.
func notPresent(exe string) bool {
	if exe == "" {
		return false
	}
	_, err := os.Stat(exe)
	return errors.Is(err, fs.ErrNotExist)
}

// warnNotPresent says on stderr that a rule's executable does not exist.
func warnNotPresent(cliContext *cli.Context, exe string) {
	if notPresent(exe) {
		fmt.Fprintf(cliContext.App.ErrWriter, "exewall: warning: %s does not exist (yet): the rule is kept and enforced when it appears; check the path for a typo\n", exe)
	}
}
