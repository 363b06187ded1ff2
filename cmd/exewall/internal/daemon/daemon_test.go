package daemon

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

func TestViolationLogRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "violations.log")
	l, err := openViolationLog(path, 4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := l.write(engine.Violation{Time: time.Now(), PID: uint32(i), Comm: "x", Verdict: engine.VerdictDeny}); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("files: %v (want the log and 2 rotated)", entries)
	}
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Size() > 4096+512 {
			t.Errorf("%s is %d bytes", e.Name(), fi.Size())
		}
	}
	// The newest entry is last in the live file.
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	last := ""
	for sc.Scan() {
		last = sc.Text()
	}
	if last == "" || !strings.Contains(last, `"pid":999`) {
		t.Errorf("last line %q", last)
	}
}

func TestSdNotify(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("unixgram")
	}
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := sdNotify("READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}
