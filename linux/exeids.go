//go:build linux

package linux

import (
	"maps"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/exewall/exewall/engine"
)

// resolved is what one resolution found of each exe path: the watcher's
// entries themselves (exewatch.go; an entry never changes once made), so
// the watcher, its memo and the identities in force share one record per
// executable. A path is here when its resolution found an identity, a place
// or symlink names. Three maps by path (identities, places, names) cost
// 100,000 rules 17 MB besides the watcher's entries.
type resolved map[string]*exeEntry

// is says whether r and o are the very same map (the memo's, shared by
// the watcher and the identities in force): then every entry is its own,
// and comparing them entry by entry is 100,000 lookups for nothing.
func (r resolved) is(o resolved) bool {
	return r != nil && reflect.ValueOf(r).UnsafePointer() == reflect.ValueOf(o).UnsafePointer()
}

// id is what path resolves to.
func (r resolved) id(path string) (engine.FileID, bool) {
	if e := r[path]; e != nil && e.hasID {
		return e.id, true
	}
	return engine.FileID{}, false
}

// place is where path's file lives (the exec hook's key).
func (r resolved) place(path string) (place, bool) {
	if e := r[path]; e != nil && e.hasPl {
		return e.pl, true
	}
	return place{}, false
}

// names is path's symlink names (names.go).
func (r resolved) names(path string) []string {
	if e := r[path]; e != nil {
		return e.names()
	}
	return nil
}

// sameWhere says whether a and b agree on where every path lives and on
// its symlink names (not on identities, which exeIDs compares).
func sameWhere(a, b resolved) bool {
	for p, e := range a {
		if !sameEntryWhere(e, b[p]) {
			return false
		}
	}
	for p, e := range b {
		if _, ok := a[p]; !ok && !sameEntryWhere(nil, e) {
			return false
		}
	}
	return true
}

// sameEntryWhere is sameWhere for one path's entries (nil: none).
func sameEntryWhere(a, b *exeEntry) bool {
	if a == b {
		return true
	}
	var pa, pb place
	var oka, okb bool
	var na, nb []string
	if a != nil {
		pa, oka, na = a.pl, a.hasPl, a.names()
	}
	if b != nil {
		pb, okb, nb = b.pl, b.hasPl, b.names()
	}
	return oka == okb && (!oka || pa == pb) && slices.Equal(na, nb)
}

// exeIDs are the identities of the policy's exe paths: every identity a
// path has had while its rule lives (a process still running a replaced
// binary stays covered), the last the one it resolves to now.
//
// Nearly every path has exactly one, what it resolves to: for those the
// resolution says it (cur, shared with the watcher's memo), and only the
// others, which kept older identities or resolve to nothing, have a list of
// their own (more). cur also says where each path lives and its symlink
// names, whatever more says. A map of a list per path cost 100,000 rules
// 8 MB besides the resolution.
type exeIDs struct {
	cur  resolved                   // read only unless owned (identities.owned)
	more map[string][]engine.FileID // a path here has this list, whatever cur says; nil: none
	// ver names what cur and more hold: every exeIDs made, and every change
	// of one in place, takes a new one (newIDsVer); 0 is unknown. The rules
	// a generation compiled with ver v hold the keys v gives their paths
	// (generation.exeVer).
	ver uint64
}

var idsVers atomic.Uint64

// newIDsVer is a ver no exeIDs had before.
func newIDsVer() uint64 { return idsVers.Add(1) }

// has says whether path is one of the policy's exe paths.
func (e exeIDs) has(path string) bool {
	if _, ok := e.more[path]; ok {
		return true
	}
	_, ok := e.cur.id(path)
	return ok
}

// appendTo appends path's identities to dst (callers pass a small array's
// slice: no allocation for the usual one).
func (e exeIDs) appendTo(dst []engine.FileID, path string) []engine.FileID {
	if l, ok := e.more[path]; ok {
		return append(dst, l...)
	}
	if id, ok := e.cur.id(path); ok {
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
	cur, ok := e.cur.id(path)
	return ok && cur == id
}

// each yields every identity of every path.
func (e exeIDs) each(yield func(engine.FileID)) {
	for p, ent := range e.cur {
		if _, ok := e.more[p]; !ok && ent.hasID {
			yield(ent.id)
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
	for p, ent := range e.cur {
		if _, ok := e.more[p]; !ok && ent.hasID {
			n++
		}
	}
	return n
}

// lists is every path's list (tests, comparisons).
func (e exeIDs) lists() map[string][]engine.FileID {
	out := make(map[string][]engine.FileID, len(e.cur)+len(e.more))
	for p, ent := range e.cur {
		if ent.hasID {
			out[p] = []engine.FileID{ent.id}
		}
	}
	maps.Copy(out, e.more)
	return out
}

// exeIDsOf is the exeIDs of lists, with no places or names.
func exeIDsOf(lists map[string][]engine.FileID) exeIDs {
	e := exeIDs{cur: resolved{}, ver: newIDsVer()}
	for p, l := range lists {
		var ent *exeEntry
		if len(l) > 0 {
			ent = &exeEntry{id: l[len(l)-1], hasID: true}
		}
		e.set(p, ent, l)
	}
	return e
}

// set makes ent path's entry (nil: none) and l its list; e must be owned.
func (e *exeIDs) set(path string, ent *exeEntry, l []engine.FileID) {
	e.ver = newIDsVer()
	if e.cur == nil {
		e.cur = resolved{}
	}
	if ent != nil {
		e.cur[path] = ent
	} else {
		delete(e.cur, path)
	}
	if len(l) == 1 && ent != nil && ent.hasID && ent.id == l[0] {
		delete(e.more, path) // cur says it
		return
	}
	if e.more == nil {
		e.more = map[string][]engine.FileID{}
	}
	e.more[path] = l
}

// del forgets path; e must be owned.
func (e *exeIDs) del(path string) {
	e.ver = newIDsVer()
	delete(e.cur, path)
	delete(e.more, path)
}

// withFound is the identities of paths once they resolve to found: each
// path's known ones (e), and the one it resolves to now when it is new.
// cur is found itself: only paths whose list is not exactly what found
// says get one of their own.
func (e exeIDs) withFound(paths []string, found resolved) exeIDs {
	out := exeIDs{cur: found, ver: newIDsVer()}
	var buf [2]engine.FileID
	for _, path := range paths {
		id, ok := found.id(path)
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
