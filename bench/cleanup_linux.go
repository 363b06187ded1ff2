//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/exewall/exewall/linux"
	"github.com/exewall/exewall/test/kerneltest"
)

// cleaner undoes everything the run put on the machine, last first. A
// resource is registered before it is created (every undo tolerates an
// absent resource), under a lock the signal handler also takes, so an
// interrupt never lands between creating something and remembering it.
type cleaner struct {
	mu       sync.Mutex
	stopping bool
	undo     []undoStep
}

type undoStep struct {
	what string
	fn   func() error
}

var errInterrupted = errors.New("interrupted")

// create registers undo, then runs do. Both happen before an interrupt's
// cleanup starts, or neither does.
func (c *cleaner) create(what string, undo func() error, do func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return errInterrupted
	}
	c.undo = append(c.undo, undoStep{what, undo})
	if do == nil {
		return nil
	}
	return do()
}

// release runs and forgets the undo steps registered since mark (for
// resources that live only for a while, such as one round's nft table).
func (c *cleaner) release(mark int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return errInterrupted
	}
	var errs []error
	for len(c.undo) > mark {
		s := c.undo[len(c.undo)-1]
		c.undo = c.undo[:len(c.undo)-1]
		if err := s.fn(); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.what, err))
		}
	}
	return errors.Join(errs...)
}

func (c *cleaner) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.undo)
}

// run undoes everything; later create calls fail with errInterrupted.
func (c *cleaner) run() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	var errs []error
	for i := len(c.undo) - 1; i >= 0; i-- {
		if err := c.undo[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.undo[i].what, err))
		}
	}
	c.undo = nil
	return errors.Join(errs...)
}

// onSignal cleans up and exits on SIGINT, SIGTERM or SIGHUP.
func (c *cleaner) onSignal() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "\nbench: %v: removing everything the benchmark created...\n", sig)
		if err := c.run(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleanup:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "bench: cleanup done")
		os.Exit(130)
	}()
}

// Every scratch name carries the run's pid so a later run can tell the
// leftovers of a killed run (SIGKILL leaves no chance to clean) from those
// of a run still going.
const scratchPrefix = "exewall-bench-"

func scratchName() string {
	return fmt.Sprintf("%s%d-%d", scratchPrefix, os.Getpid(), time.Now().UnixNano()%1e6)
}

func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// stalePid parses the pid of a scratch name; ok is false for names that are
// not ours or whose run is still alive.
func stalePid(name string) bool {
	rest, ok := strings.CutPrefix(name, scratchPrefix)
	if !ok {
		return false
	}
	pidStr, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	return err == nil && !pidAlive(pid)
}

// sweepStale removes cgroups and bpffs pins left by a benchmark run that was
// killed; it returns what it removed.
func sweepStale(cgroupRoot string) []string {
	var removed []string
	if entries, err := os.ReadDir("/sys/fs/bpf"); err == nil {
		for _, e := range entries {
			if e.IsDir() && stalePid(e.Name()) {
				dir := filepath.Join("/sys/fs/bpf", e.Name())
				subs, _ := os.ReadDir(dir)
				for _, s := range subs {
					if s.IsDir() {
						linux.Reset(context.Background(), linux.Config{PinDir: filepath.Join(dir, s.Name())})
					}
				}
				linux.Reset(context.Background(), linux.Config{PinDir: dir})
				removed = append(removed, dir)
			}
		}
	}
	if entries, err := os.ReadDir(cgroupRoot); err == nil {
		for _, e := range entries {
			if e.IsDir() && stalePid(e.Name()) {
				dir := filepath.Join(cgroupRoot, e.Name())
				if kerneltest.RemoveCgroup(dir) == nil {
					removed = append(removed, dir)
				}
			}
		}
	}
	return removed
}
