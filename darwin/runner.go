package darwin

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// runner runs one external command. Every pfctl and launchctl call goes
// through a runner, so tests on any OS can put a fake program on PATH and
// check the exact command sequence.
type runner interface {
	// Run runs the command with args, feeding it stdin (none when nil), and
	// returns what it wrote to stdout and stderr together: pfctl prints
	// some results, such as the enable token, on stderr.
	Run(ctx context.Context, stdin []byte, args ...string) ([]byte, error)
}

// command is a Runner for the program of that name, looked up on PATH at
// every run (or an absolute path).
type command string

// Run implements Runner. A failure wraps the *exec.Error or *exec.ExitError
// and quotes the program's output on one line.
func (c command) Run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, string(c), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.Join(strings.Fields(strings.ReplaceAll(string(out), "\n", " ; ")), " ")
		if msg != "" {
			return out, fmt.Errorf("%s %s: %w: %s", c, strings.Join(args, " "), err, msg)
		}
		return out, fmt.Errorf("%s %s: %w", c, strings.Join(args, " "), err)
	}
	return out, nil
}
