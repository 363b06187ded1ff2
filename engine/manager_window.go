package engine

import (
	"sort"
	"sync"
	"time"
)

// window is a bounded ring of the latest violations plus the live
// subscribers. Record never blocks: a storm of denied connects costs a
// fixed amount of memory, and a subscriber that cannot keep up is dropped
// (its channel closed) instead of slowing everyone else.
type window struct {
	mu       sync.Mutex
	ring     []Violation // grows to size as violations come: an idle daemon holds none
	size     int
	firsts   []Violation // the first event of each (program, rule): never rotated out
	folded   uint64      // events folded into summaries (fold.go)
	flooding int         // programs being folded right now
	next     int         // where the next violation goes
	full     bool        // ring has wrapped
	total    uint64
	attempts uint64 // what the events stand for: the sum of their counts
	subs     map[*subscriber]struct{}
	subBuf   int
	dropped  uint64 // subscribers dropped for being slow
}

type subscriber struct{ ch chan Violation }

func newWindow(size, subBuf int) *window {
	return &window{size: size, subs: map[*subscriber]struct{}{}, subBuf: subBuf}
}

// grow makes room for one more violation in a ring not yet at its size,
// doubling it up to size.
func (w *window) grow() {
	if len(w.ring) < cap(w.ring) {
		w.ring = w.ring[:len(w.ring)+1]
		return
	}
	ring := make([]Violation, len(w.ring)+1, min(max(2*cap(w.ring), 64), w.size))
	copy(ring, w.ring)
	w.ring = ring
}

func (w *window) record(v Violation, pinned bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pinned {
		w.firsts = append(w.firsts, v)
	} else {
		if !w.full && w.next == len(w.ring) {
			w.grow()
		}
		w.ring[w.next] = v
		w.next++
		if w.next == w.size {
			w.next, w.full = 0, true
		}
	}
	w.total++
	w.attempts += max(v.Count, 1)
	for s := range w.subs {
		select {
		case s.ch <- v:
		default:
			close(s.ch)
			delete(w.subs, s)
			w.dropped++
		}
	}
}

// since returns the violations kept whose time is at or after t, oldest
// first.
func (w *window) since(t time.Time) []Violation {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Violation
	add := func(vs []Violation) {
		for _, v := range vs {
			if !v.Time.Before(t) {
				out = append(out, v)
			}
		}
	}
	add(w.firsts)
	if w.full {
		add(w.ring[w.next:])
	}
	add(w.ring[:w.next])
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

func (w *window) setFold(folded uint64, flooding int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.folded, w.flooding = folded, flooding
}

func (w *window) foldStats() (folded uint64, flooding int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.folded, w.flooding
}

func (w *window) subscribe() (<-chan Violation, func()) {
	s := &subscriber{ch: make(chan Violation, w.subBuf)}
	w.mu.Lock()
	w.subs[s] = struct{}{}
	w.mu.Unlock()
	return s.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.subs[s]; ok {
			delete(w.subs, s)
			close(s.ch)
		}
	}
}

// closeAll ends every subscription (the violation stream has ended).
func (w *window) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.subs {
		close(s.ch)
		delete(w.subs, s)
	}
}

func (w *window) stats() (total, droppedSubs uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total, w.dropped
}

func (w *window) attemptsSeen() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.attempts
}
