//go:build linux

package linux

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// The kernel tests' harness is test/kerneltest; these are its words in this
// package's tests.

func requireKernel(t *testing.T) { t.Helper(); kerneltest.Require(t) }

func randName(prefix string) string { return kerneltest.Name(prefix) }

func scratchCgroup(t *testing.T) string { t.Helper(); return kerneltest.Cgroup(t) }

// scratchPinDir names a pin dir of the test's own, reset when it ends.
func scratchPinDir(t *testing.T) string {
	t.Helper()
	return kerneltest.PinDir(t, func(dir string) error { return Reset(context.Background(), Config{PinDir: dir}) })
}

func clientCopy(t *testing.T, dir, name string) string {
	t.Helper()
	return kerneltest.Copy(t, dir, name)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := kerneltest.CopyFile(src, dst); err != nil {
		t.Fatal(err)
	}
}

func listenLoopback(t *testing.T) uint16 { t.Helper(); return kerneltest.ListenLoopback(t) }

func listenEcho(t *testing.T) uint16 { t.Helper(); return kerneltest.ListenEcho(t) }

type attempt = kerneltest.Attempt

// outcome is what a client saw; denied means EPERM.
type outcome struct{ kerneltest.Outcome }

func (o outcome) denied() bool { return o.Denied() }

func outcomes(out []kerneltest.Outcome) []outcome {
	res := make([]outcome, len(out))
	for i, o := range out {
		res[i] = outcome{o}
	}
	return res
}

type clientOpts = kerneltest.ClientOpts

// runClient runs exe inside cgroup cg and returns its pid and outcomes.
func runClient(t *testing.T, exe, cg string, attempts []attempt, opts ...clientOpts) (int, []outcome) {
	t.Helper()
	pid, out := kerneltest.RunClient(t, exe, cg, attempts, opts...)
	return pid, outcomes(out)
}

// liveClient is a client the test talks to while it runs.
type liveClient struct{ *kerneltest.Live }

func startClient(t *testing.T, exe, cg string, attempts []attempt) liveClient {
	t.Helper()
	return liveClient{kerneltest.StartClient(t, exe, cg, attempts)}
}

func (c liveClient) waitReady(t *testing.T) { t.Helper(); c.WaitReady(t) }

func (c liveClient) proceed(t *testing.T) []outcome { t.Helper(); return outcomes(c.Proceed(t)) }

type testBackend struct {
	*Backend
	cgroup string
	pinDir string
}

// newTestBackend loads the datapath with a scratch pin dir attached to cg,
// and at cleanup checks that nothing is left pinned.
func newTestBackend(t *testing.T, cg string, mod ...func(*Config)) *testBackend {
	t.Helper()
	cfg := Config{Cgroup: cg, PinDir: scratchPinDir(t), DetachOnClose: true, WatchInterval: 200 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("load backend: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
		if _, err := os.Stat(cfg.PinDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s left behind", cfg.PinDir)
		}
	})
	return &testBackend{Backend: b, cgroup: cg, pinDir: cfg.PinDir}
}

func (tb *testBackend) apply(t *testing.T, p *engine.Policy) {
	t.Helper()
	if err := tb.Apply(context.Background(), p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tb.sabotage()
}

// sabotage removes protections named in EXEWALL_TEST_SABOTAGE (comma
// separated: detach, sock_create, exec, loader, sock_destroy, stat) after
// an apply, to show that the tests guarding them fail without them. (Unlike
// EXEWALL_TEST_DISABLE, which the backend itself honours, this breaks a
// backend that believes the hook is in force.)
func (tb *testBackend) sabotage() {
	for _, what := range strings.Split(os.Getenv("EXEWALL_TEST_SABOTAGE"), ",") {
		switch what {
		case "detach", "sock_create":
			for name, l := range tb.links {
				if what == "detach" || name == what {
					l.Unpin()
					l.Close()
					delete(tb.links, name)
				}
			}
		case "exec":
			// The exec hook and the identity hooks beside it (fork, exit,
			// loader reads): identities then come from mm->exe_file when
			// a process is first seen.
			if tb.execLink != nil {
				tb.execLink.Unpin()
				tb.execLink.Close()
				tb.execLink = nil
			}
			for _, l := range tb.identLinks {
				l.Unpin()
				l.Close()
			}
			tb.identLinks = nil
		case "loader":
			var k datapathFileId
			for tb.objs.Loaders.NextKey(nil, &k) == nil {
				tb.objs.Loaders.Delete(k)
			}
		case "sock_destroy":
			tb.sockIter = nil
		case "stat":
			tb.resolver.Close() // falls back to stat()
		default:
			tb.sabotageGuard(what)
			tb.sabotageInbound(what)
		}
	}
}

// waitViolation waits for the violation that matches, failing after a few
// seconds.
func waitViolation(t *testing.T, b *Backend, match func(engine.Violation) bool) engine.Violation {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case v := <-b.Violations():
			if match(v) {
				return v
			}
		case <-timeout:
			t.Fatal("no matching violation within 5s")
		}
	}
}

// drainViolations collects the violations that arrive until the stream has
// been quiet for a moment.
func drainViolations(b *Backend, quiet time.Duration) []engine.Violation {
	var out []engine.Violation
	for {
		select {
		case v := <-b.Violations():
			out = append(out, v)
		case <-time.After(quiet):
			return out
		}
	}
}
