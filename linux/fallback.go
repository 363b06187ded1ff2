//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// disableEnv names hooks the backend must treat as missing from the kernel
// (EXEWALL_TEST_DISABLE=exec,sock_destroy), so that tests run every fallback
// on a kernel that has all of them. The names are those status and doctor
// use: sock_create, exec, sock_destroy, and iter (the task_file iterator
// that resolves executables the kernel's way; without it, stat()).
const disableEnv = "EXEWALL_TEST_DISABLE"

// fallbackHooks are the hooks a kernel may lack without exewall refusing to
// run; docs/kernels.md says what each one's absence costs.
var fallbackHooks = []string{"sock_create", "exec", "sock_destroy", "iter"}

// disabledByTest returns why hook may not be used when disableEnv names it.
func disabledByTest(hook string) error {
	for _, name := range strings.Split(os.Getenv(disableEnv), ",") {
		if strings.TrimSpace(name) == hook {
			return fmt.Errorf("disabled by %s: %w", disableEnv, engine.ErrNotSupported)
		}
	}
	return nil
}

// notSupported wraps err in engine.ErrNotSupported when it says the kernel
// cannot do what was asked (a program type, helper, kfunc or attach type it
// lacks, or a lockdown refusal), so callers tell a kernel limit from a fault.
func notSupported(what string, err error) error {
	var ve *ebpf.VerifierError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, engine.ErrNotSupported):
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &ve):
		// The verifier rejects calls to helpers and kfuncs the kernel does
		// not have; its log's last line says which.
		return fmt.Errorf("%s: %w: %s", what, engine.ErrNotSupported, lastLine(ve))
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EPERM), errors.Is(err, unix.EINVAL),
		errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.Errno(524)): // ENOTSUPP, the kernel's own
		return fmt.Errorf("%s: %w: %w", what, engine.ErrNotSupported, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func lastLine(ve *ebpf.VerifierError) string {
	for i := len(ve.Log) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(ve.Log[i]); s != "" && !strings.HasPrefix(s, "processed ") {
			return s
		}
	}
	return ve.Error()
}
