package engine

import (
	"context"
	"time"
)

// A folder keeps one program's flood from washing everyone else's evidence
// out of the window and the log (issue 13 item 9). Every program (its
// executable, else its comm) has a token bucket: within it, events pass one
// by one; past it they are folded into one summary per program and second
// (Folded says how many events it stands for, Count how many attempts, the
// address is the last one). The first event of every (program, rule) always
// passes and is pinned in the window, however hard anyone floods.
type folder struct {
	rate, burst float64 // events per second and program, bucket size
	progs       map[string]*progFold
	firsts      map[firstKey]bool
	folded      uint64 // events folded into summaries so far
}

type firstKey struct{ prog, rule string }

type progFold struct {
	tokens  float64
	last    time.Time
	summary *Violation // events being folded, nil when none
	opened  time.Time  // when summary began
}

const (
	foldRate      = 100  // events per second a program may add unfolded
	foldBurst     = 1000 // and at once
	foldMaxProgs  = 8192 // programs tracked; idle ones are forgotten first
	foldMaxFirsts = 4096 // (program, rule) pairs whose first event is pinned
	foldSpan      = time.Second
)

// foldOff turns folding and pinning off (tests show what they prevent).
var foldOff = false

func newFolder() *folder {
	return &folder{rate: foldRate, burst: foldBurst, progs: map[string]*progFold{}, firsts: map[firstKey]bool{}}
}

func progOf(v Violation) string {
	if v.Exe != "" {
		return v.Exe
	}
	return "comm:" + v.Comm
}

// add decides what becomes of v: passed on (out), pinned as a first event
// (first), or folded (nothing now; a summary later). A summary whose second
// is over comes out with the event that closes it.
func (f *folder) add(v Violation, now time.Time) (out []Violation, first bool) {
	if foldOff {
		return []Violation{v}, false
	}
	p := progOf(v)
	fk := firstKey{p, v.Rule}
	if !f.firsts[fk] && len(f.firsts) < foldMaxFirsts {
		f.firsts[fk] = true
		first = true
	}
	ps := f.progs[p]
	if ps == nil {
		if len(f.progs) >= foldMaxProgs {
			f.evictIdle(now)
		}
		ps = &progFold{tokens: f.burst, last: now}
		f.progs[p] = ps
	}
	ps.tokens = min(f.burst, ps.tokens+f.rate*now.Sub(ps.last).Seconds())
	ps.last = now
	if ps.summary != nil && now.Sub(ps.opened) >= foldSpan {
		out = append(out, *ps.summary)
		ps.summary = nil
	}
	if first || ps.tokens >= 1 {
		if !first {
			ps.tokens--
		}
		return append(out, v), first
	}
	f.folded++
	if ps.summary == nil {
		s := v
		s.Folded, s.Count = 1, max(v.Count, 1)
		ps.summary, ps.opened = &s, now
		return out, false
	}
	s := ps.summary
	s.Folded++
	s.Count += max(v.Count, 1)
	s.Time, s.PID, s.Daddr, s.Dport, s.Proto, s.Family = v.Time, v.PID, v.Daddr, v.Dport, v.Proto, v.Family
	if s.Rule != v.Rule {
		s.Rule = "" // a summary across rules names none
	}
	return out, false
}

// flush returns the summaries whose second is over (all with force).
func (f *folder) flush(now time.Time, force bool) []Violation {
	var out []Violation
	for _, ps := range f.progs {
		if ps.summary != nil && (force || now.Sub(ps.opened) >= foldSpan) {
			out = append(out, *ps.summary)
			ps.summary = nil
		}
	}
	return out
}

// flooding counts the programs whose events are being folded right now.
func (f *folder) flooding() int {
	n := 0
	for _, ps := range f.progs {
		if ps.summary != nil {
			n++
		}
	}
	return n
}

func (f *folder) evictIdle(now time.Time) {
	for p, ps := range f.progs {
		if ps.summary == nil && now.Sub(ps.last) > 10*time.Second {
			delete(f.progs, p)
		}
	}
	for p, ps := range f.progs {
		if len(f.progs) < foldMaxProgs {
			break
		}
		if ps.summary == nil {
			delete(f.progs, p)
		}
	}
}

// Run consumes the backend's violations until the stream ends or ctx is
// done: each is kept in the window, passed to OnViolation and to every
// subscriber.
//
// A flooding program's events are folded into summaries first (fold.go);
// learning still sees every event.
func (m *Manager) Run(ctx context.Context) {
	defer m.win.closeAll()
	ch := m.cfg.Backend.Violations()
	f := newFolder()
	tick := time.NewTicker(foldSpan)
	defer tick.Stop()
	pass := func(v Violation, pinned bool) {
		m.win.record(v, pinned)
		if m.cfg.OnViolation != nil {
			m.cfg.OnViolation(v)
		}
	}
	defer func() {
		for _, s := range f.flush(time.Now(), true) {
			pass(s, false)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, s := range f.flush(now, false) {
				pass(s, false)
			}
			m.win.setFold(f.folded, f.flooding())
		case v, ok := <-ch:
			if !ok {
				return
			}
			if v.Direction == "" {
				v.Direction = DirOut.String()
			}
			if ls := m.learn.Load(); ls != nil {
				ls.record(v)
			}
			out, first := f.add(v, time.Now())
			for i, o := range out {
				pass(o, first && i == len(out)-1)
			}
		}
	}
}
