//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// stormDaemon makes denied connects from several processes as fast as they
// go, then compares what they saw, the kernel's counter and what the daemon
// delivered or reported lost.
func (b *bench) stormDaemon(bin string, d *daemon) error {
	exe := filepath.Join(b.tmp, "storm-client")
	if err := kerneltest.CopyFile(b.client, exe); err != nil {
		return err
	}
	if _, _, err := b.cli(bin, d, "deny", "--name", "storm", exe); err != nil {
		return err
	}
	before, err := b.status(bin, d)
	if err != nil {
		return err
	}
	s, err := b.storm(exe, d.cgroup)
	if err != nil {
		return err
	}
	s.Via = "daemon"
	t0 := time.Now()
	var st engine.Status
	for last, stable := uint64(0), 0; ; {
		if st, err = b.status(bin, d); err != nil {
			return err
		}
		seen := st.ViolationAttempts - before.ViolationAttempts + st.EventsLost - before.EventsLost
		if seen >= s.EPERM || time.Since(t0) > 30*time.Second {
			break
		}
		if seen == last {
			if stable++; stable >= 40 { // 4 s: the daemon flushes the tail of a burst after two idle 1 s windows
				break
			}
		} else {
			stable = 0
		}
		last = seen
		time.Sleep(100 * time.Millisecond)
	}
	s.DrainSeconds = time.Since(t0).Seconds()
	s.KernelDenied = st.RuleCounter["storm"].Denied - before.RuleCounter["storm"].Denied
	s.Delivered = st.ViolationAttempts - before.ViolationAttempts
	s.Events = st.Violations - before.Violations
	s.Lost = st.EventsLost - before.EventsLost
	s.DeliveredPerSec = float64(s.Delivered) / s.Seconds
	s.LogLines = countLines(filepath.Join(d.stateDir, "violations.log"))
	s.Note = fmt.Sprintf("Each child connect()s one UDP socket to 127.0.0.1 in a loop; the connect4 hook refuses every call (EPERM). "+
		"Delivered = attempts accounted by the events the daemon received (status `violation_attempts`: the kernel aggregates repeats of one attempt per second into one event with a count; `events` is how many events that took); lost = status `events_lost` (ring buffer full or reader behind). "+
		"violations.log holds %s lines (rotated at 10 MiB).", count(s.LogLines))
	b.rep.Storm = s
	return nil
}

// storm runs the storm clients in cg and sums what they saw.
func (b *bench) storm(exe, cg string) (*StormResult, error) {
	n := 2 * b.ncpu
	dur := time.Duration(b.sizes().stormSecs * float64(time.Second))
	fmt.Fprintf(os.Stderr, "bench: storm: %d processes for %v\n", n, dur)
	j := job{Op: "storm", Port: 9, Duration: dur, StartAt: time.Now().Add(500 * time.Millisecond).UnixNano(), CPU: -1}
	type result struct {
		r   jobResult
		err error
	}
	ch := make(chan result, n)
	for range n {
		go func() {
			r, err := b.runClient(exe, cg, j, dur+time.Minute)
			ch <- result{r, err}
		}()
	}
	s := &StormResult{Children: n}
	var errs []error
	for range n {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		s.Attempts += r.r.Attempts
		s.EPERM += r.r.EPERM
		s.Seconds = max(s.Seconds, r.r.Seconds)
		if r.r.FirstError != "" {
			errs = append(errs, errors.New(r.r.FirstError))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.AttemptsPerSec = float64(s.Attempts) / s.Seconds
	return s, nil
}

// stormBackend is the storm against an in-process backend, used when the
// daemon cannot be built: delivered = events read from Violations().
func (b *bench) stormBackend() error {
	exe := filepath.Join(b.tmp, "storm-client")
	if err := kerneltest.CopyFile(b.client, exe); err != nil {
		return err
	}
	cg := filepath.Join(b.base, "storm")
	if err := b.cl.create("cgroup "+cg, func() error { return kerneltest.RemoveCgroup(cg) }, func() error { return os.Mkdir(cg, 0o755) }); err != nil {
		return err
	}
	be, err := b.newBackend(cg, "storm")
	if err != nil {
		return err
	}
	if err := be.Apply(context.Background(), &engine.Policy{Rules: []engine.Rule{{Name: "storm", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}}); err != nil {
		return err
	}
	var delivered uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case v, ok := <-be.Violations():
				if !ok {
					return
				}
				delivered += max(v.Count, 1)
			case <-stop:
				return
			}
		}
	}()
	s, err := b.storm(exe, cg)
	if err != nil {
		close(stop)
		return err
	}
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	st, err := be.State(context.Background())
	if err != nil {
		return err
	}
	s.Via = "backend"
	s.KernelDenied = st.RuleCounter["storm"].Denied
	s.Delivered = delivered
	s.Lost = st.EventsLost
	s.DeliveredPerSec = float64(delivered) / s.Seconds
	b.rep.Storm = s
	return nil
}

func countLines(path string) int {
	n := 0
	for _, p := range []string{path, path + ".1", path + ".2", path + ".3"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			n++
		}
		f.Close()
	}
	return n
}
