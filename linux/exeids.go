//go:build linux

package linux

import (
	"maps"
	"slices"

	"github.com/exewall/exewall/engine"
)

// exeIDs are the identities of the policy's exe paths: every identity a
// path has had while its rule lives (a process still running a replaced
// binary stays covered), the last the one it resolves to now.
//
// Nearly every path has exactly one, what it resolves to: for those the
// resolution's own map says it (cur, shared with the watcher's memo), and
// only the others, which kept older identities or resolve to nothing, have
// a list of their own (more). A map of a list per path cost 100,000 rules
// 8 MB besides the resolution's map.
type exeIDs struct {
	cur  map[string]engine.FileID   // read only unless owned (identities.owned)
	more map[string][]engine.FileID // a path here has this list, whatever cur says; nil: none
}

// has says whether path is one of the policy's exe paths.
func (e exeIDs) has(path string) bool {
	if _, ok := e.more[path]; ok {
		return true
	}
	_, ok := e.cur[path]
	return ok
}

// appendTo appends path's identities to dst (callers pass a small array's
// slice: no allocation for the usual one).
func (e exeIDs) appendTo(dst []engine.FileID, path string) []engine.FileID {
	if l, ok := e.more[path]; ok {
		return append(dst, l...)
	}
	if id, ok := e.cur[path]; ok {
		return append(dst, id)
	}
	return dst
}

// list is path's identities in a new slice.
func (e exeIDs) list(path string) []engine.FileID {
	return e.appendTo(nil, path)
}

func (e exeIDs) contains(path string, id engine.FileID) bool {
	if l, ok := e.more[path]; ok {
		return slices.Contains(l, id)
	}
	cur, ok := e.cur[path]
	return ok && cur == id
}

// each yields every identity of every path.
func (e exeIDs) each(yield func(engine.FileID)) {
	for p, id := range e.cur {
		if _, ok := e.more[p]; !ok {
			yield(id)
		}
	}
	for _, l := range e.more {
		for _, id := range l {
			yield(id)
		}
	}
}

// len is how many paths there are.
func (e exeIDs) len() int {
	n := len(e.more)
	for p := range e.cur {
		if _, ok := e.more[p]; !ok {
			n++
		}
	}
	return n
}

// lists is every path's list (tests, comparisons).
func (e exeIDs) lists() map[string][]engine.FileID {
	out := make(map[string][]engine.FileID, len(e.cur)+len(e.more))
	for p, id := range e.cur {
		out[p] = []engine.FileID{id}
	}
	maps.Copy(out, e.more)
	return out
}

// exeIDsOf is the exeIDs of lists.
func exeIDsOf(lists map[string][]engine.FileID) exeIDs {
	e := exeIDs{cur: map[string]engine.FileID{}}
	for p, l := range lists {
		e.set(p, l)
	}
	return e
}

// set makes l path's list; e must be owned.
func (e *exeIDs) set(path string, l []engine.FileID) {
	if len(l) == 1 {
		if e.cur == nil {
			e.cur = map[string]engine.FileID{}
		}
		e.cur[path] = l[0]
		delete(e.more, path)
		return
	}
	if e.more == nil {
		e.more = map[string][]engine.FileID{}
	}
	e.more[path] = l
	delete(e.cur, path)
}

// del forgets path; e must be owned.
func (e *exeIDs) del(path string) {
	delete(e.cur, path)
	delete(e.more, path)
}

// withFound is the identities of paths once they resolve to found: each
// path's known ones (e), and the one it resolves to now when it is new.
// cur is found itself: only paths whose list is not exactly what found
// says get one of their own.
func (e exeIDs) withFound(paths []string, found map[string]engine.FileID) exeIDs {
	out := exeIDs{cur: found}
	var buf [2]engine.FileID
	for _, path := range paths {
		id, ok := found[path]
		known := e.appendTo(buf[:0], path)
		if ok && len(known) == 0 || ok && len(known) == 1 && known[0] == id {
			continue // cur says it
		}
		l := slices.Clone(known)
		if ok && !slices.Contains(l, id) {
			l = append(l, id)
		}
		if out.more == nil {
			out.more = map[string][]engine.FileID{}
		}
		out.more[path] = l // nil for a path that never resolved
	}
	return out
}
