//go:build linux

package kerneltest

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// ProcKB reads a kB field of /proc/PID/status (VmRSS, VmHWM); 0 when the
// process or the field is gone.
func ProcKB(pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	return 0
}
