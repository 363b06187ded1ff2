package daemon

import (
	"encoding/json"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/exewall/exewall/engine"
)

// violationStream writes each violation as one JSON line to stdout when the
// daemon logs JSON (--log-format json), for log collectors (journald,
// Kubernetes, Fluent Bit) that read a process's output. The objects are
// exactly those of `exewall violations --json` (engine.Violation; see
// docs/operations.md). Logs go to stderr (or --log), so stdout holds
// violations only.
//
// A slow reader never stalls the daemon: lines wait in a bounded queue and
// what does not fit is dropped and counted.
type violationStream struct {
	ch      chan engine.Violation
	dropped atomic.Uint64
}

const violationStreamQueue = 4096

// newViolationStream returns nil unless format is "json".
func newViolationStream(format string, w io.Writer, log *slog.Logger, done <-chan struct{}) *violationStream {
	if format != "json" {
		return nil
	}
	s := &violationStream{ch: make(chan engine.Violation, violationStreamQueue)}
	go func() {
		enc := json.NewEncoder(w)
		reported := uint64(0)
		for {
			select {
			case <-done:
				return
			case v := <-s.ch:
				if err := enc.Encode(v); err != nil {
					s.dropped.Add(1)
				}
				if d := s.dropped.Load(); d != reported && len(s.ch) == 0 {
					log.Warn("violations dropped from stdout (reader too slow)", "dropped_total", d)
					reported = d
				}
			}
		}
	}()
	return s
}

// write queues v; it never blocks.
func (s *violationStream) write(v engine.Violation) {
	if s == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
		s.dropped.Add(1)
	}
}
