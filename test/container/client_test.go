//go:build linux

package container

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// clientEnv makes the test binary a client: with "once" it makes one TCP
// connection attempt to the loopback address in clientAddrEnv and prints
// "ok" (the kernel let it through) or the errno's name; with "loop" it
// attempts until its stdin closes, writing one byte per attempt: E for
// EPERM, S for let through, X for anything else.
const (
	clientEnv     = "EXEWALL_CONTAINER_CLIENT"
	clientAddrEnv = "EXEWALL_CONTAINER_CLIENT_ADDR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(clientEnv); mode != "" {
		os.Exit(clientMain(mode, os.Getenv(clientAddrEnv)))
	}
	os.Exit(m.Run())
}

func clientMain(mode, addr string) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() || !ap.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "the client talks to IPv4 loopback only:", addr)
		return 2
	}
	if mode == "once" {
		err := attempt(ap)
		if err == nil {
			fmt.Println("ok")
		} else {
			fmt.Println(unix.ErrnoName(err.(syscall.Errno)))
		}
		return 0
	}
	stop := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadByte()
		close(stop)
	}()
	out := bufio.NewWriter(os.Stdout)
	for {
		select {
		case <-stop:
			out.Flush()
			return 0
		default:
		}
		b := byte('X')
		switch err := attempt(ap); {
		case err == nil:
			b = 'S'
		case errors.Is(err, syscall.EPERM):
			b = 'E'
		}
		out.WriteByte(b)
		out.Flush()
		time.Sleep(2 * time.Millisecond)
	}
}

// attempt is one connect(); a refused connection was let through.
func attempt(ap netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err != nil {
		return err.(syscall.Errno)
	}
	return nil
}

// clientCmd is the test binary as a client, started in the cgroup dir.
func clientCmd(t *testing.T, cgroupDir, mode, addr string) (*exec.Cmd, func()) {
	t.Helper()
	cg, err := os.Open(cgroupDir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), clientEnv+"="+mode, clientAddrEnv+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Pdeathsig: syscall.SIGKILL}
	return cmd, func() { cg.Close() }
}

// once runs one attempt from the cgroup and returns the client's word and pid.
func once(t *testing.T, cgroupDir, addr string) (string, int) {
	t.Helper()
	cmd, done := clientCmd(t, cgroupDir, "once", addr)
	defer done()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	word := string(out)
	if n := len(word); n > 0 && word[n-1] == '\n' {
		word = word[:n-1]
	}
	return word, cmd.Process.Pid
}

// loop is a client attempting connections until stopped.
type loop struct {
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	counts chan map[byte]int
	seen   chan int // running count of attempts, for waiting
	done   func()
}

func startLoop(t *testing.T, cgroupDir, addr string) *loop {
	t.Helper()
	cmd, done := clientCmd(t, cgroupDir, "loop", addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &loop{cmd: cmd, stdin: stdin, counts: make(chan map[byte]int, 1), seen: make(chan int, 1), done: done}
	go func() {
		counts := map[byte]int{}
		r := bufio.NewReader(stdout)
		total := 0
		for {
			b, err := r.ReadByte()
			if err != nil {
				break
			}
			counts[b]++
			total++
			select {
			case <-l.seen:
			default:
			}
			l.seen <- total
		}
		l.counts <- counts
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

// total waits for the loop to have made at least n attempts.
func (l *loop) waitFor(t *testing.T, n int) int {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case got := <-l.seen:
			if got >= n {
				return got
			}
		case <-deadline:
			t.Fatalf("the client loop made fewer than %d attempts in a minute", n)
		}
	}
}

// stop ends the loop and returns how many attempts gave each result.
func (l *loop) stop() map[byte]int {
	if l.cmd == nil {
		return nil
	}
	l.stdin.Close()
	l.cmd.Wait()
	l.done()
	l.cmd = nil
	return <-l.counts
}
