//go:build linux

package linux

import (
	"testing"

	"github.com/exewall/exewall/engine"
)

func queueBackend() *Backend {
	b := &Backend{violations: make(chan engine.Violation, violationChan), done: make(chan struct{}),
		queue: violationQueue{wake: make(chan struct{}, 1)}}
	b.wg.Add(1)
	go b.forwardViolations()
	return b
}

// TestViolationQueueKeepsOrderAndBound: events reach the consumer in the
// order they came; beyond violationBuffer waiting, the attempts they stand
// for are counted as lost, never blocking the reader.
func TestViolationQueueKeepsOrderAndBound(t *testing.T) {
	b := queueBackend()
	const extra = 100
	for i := range violationBuffer + violationChan + extra {
		b.deliver(engine.Violation{PID: uint32(i), Count: 2}, 2)
	}
	// The forwarder may have moved up to violationChan events into the
	// channel before the queue filled: between extra and extra+violationChan
	// events were refused, two attempts each.
	lost := b.droppedEvents()
	if lost < 2*extra || lost > 2*(extra+violationChan) || lost%2 != 0 {
		t.Fatalf("lost %d attempts, want between %d and %d", lost, 2*extra, 2*(extra+violationChan))
	}
	got := 0
	for got < violationBuffer+violationChan+extra-int(lost/2) {
		v := <-b.violations
		if v.PID != uint32(got) {
			t.Fatalf("event %d arrived as %d", got, v.PID)
		}
		got++
	}
	close(b.done)
	b.wg.Wait()
	b.flushViolations()
	if len(b.violations) != 0 || b.droppedEvents() != lost {
		t.Fatalf("after close: %d more events, %d lost (was %d)", len(b.violations), b.droppedEvents(), lost)
	}
}

// TestViolationQueueFlushOnClose: what waits when the backend closes goes
// into the channel while it has room, the rest is counted as lost.
func TestViolationQueueFlushOnClose(t *testing.T) {
	b := &Backend{violations: make(chan engine.Violation, violationChan), done: make(chan struct{}),
		queue: violationQueue{wake: make(chan struct{}, 1)}}
	for i := range violationChan + 10 {
		b.deliver(engine.Violation{PID: uint32(i), Count: 1}, 1)
	}
	b.flushViolations()
	if len(b.violations) != violationChan || b.droppedEvents() != 10 {
		t.Fatalf("flushed %d events, lost %d; want %d and 10", len(b.violations), b.droppedEvents(), violationChan)
	}
	if v := <-b.violations; v.PID != 0 {
		t.Fatalf("first flushed event is %d", v.PID)
	}
}
