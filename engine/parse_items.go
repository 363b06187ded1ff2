package engine

import (
	"bytes"
	"runtime"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// itemsAbove is the file size from which Parse reads the rules one by one.
const itemsAbove = 64 << 10

// parseItems is Parse for a large file whose rules scanRules can delimit,
// without a YAML tree of the whole file: that tree is ~17 times the file
// (138 MB for the 8 MB of 100,000 rules), the daemon's peak memory at
// start. The rest of the file is parsed with the items' lines left blank
// (line numbers stay), then each item alone, on every CPU, its nodes'
// lines moved to where the item is.
//
// It returns false for anything it does not take for certain, and for any
// error: Parse then reads the whole tree as before, which gives the error
// exactly as it always did.
func parseItems(data []byte) (*Policy, bool) {
	if len(data) < itemsAbove {
		return nil, false
	}
	items, _, ok := scanRules(data, bytes.Count(data, []byte("\n- "))+bytes.Count(data, []byte("\n  - ")))
	if !ok {
		return nil, false
	}
	first, last := items[0].start, items[len(items)-1].end
	skel := make([]byte, 0, first+(len(data)-last)+bytes.Count(data[first:last], []byte{'\n'}))
	skel = append(skel, data[:first]...)
	for range bytes.Count(data[first:last], []byte{'\n'}) {
		skel = append(skel, '\n')
	}
	skel = append(skel, data[last:]...)
	p, err := parseTree(skel)
	if err != nil || len(p.Rules) != 0 {
		return nil, false
	}
	// The line each item starts on.
	lines := make([]int, len(items))
	line, off := 1, 0
	for i, it := range items {
		line += bytes.Count(data[off:it.start], []byte{'\n'})
		lines[i], off = line, it.start
	}
	// Items are parsed a chunk at a time: a parser per item cost more
	// than the tree it saves (~10 KB of buffers each).
	const chunk = 256
	rules := make([]Rule, len(items))
	failed := make([]bool, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	next := make(chan int, (len(items)+chunk-1)/chunk)
	for lo := 0; lo < len(items); lo += chunk {
		next <- lo
	}
	close(next)
	for w := range failed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if recover() != nil { // (Parse's guard does not reach here)
					failed[w] = true
				}
			}()
			for lo := range next {
				hi := min(lo+chunk, len(items))
				if !parseChunk(data[items[lo].start:items[hi-1].end], lines[lo], rules[lo:hi]) {
					failed[w] = true
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failed {
		if f {
			return nil, false
		}
	}
	c := newChecker(func(int, string) int { return 0 }, len(rules)) // (an error: the tree says where)
	for i := range rules {
		if c.add(rules, i) != nil {
			return nil, false
		}
	}
	packStrings(rules)
	p.Rules = rules
	return p, true
}

// packStrings copies the rules' names and selectors into one block: the
// parser made each among its own garbage, a few bytes kept alive in pages
// that are otherwise free (RssAnon of a daemon on 100,000 rules 81 → 79
// MiB).
func packStrings(rules []Rule) {
	n := 0
	for i := range rules {
		r := &rules[i]
		n += len(r.Name) + len(r.Exe) + len(r.Cgroup) + len(r.User) + len(r.Group)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range rules {
		r := &rules[i]
		for _, s := range []string{r.Name, r.Exe, r.Cgroup, r.User, r.Group} {
			b.WriteString(s)
		}
	}
	all, off := b.String(), 0
	take := func(s *string) {
		*s, off = all[off:off+len(*s)], off+len(*s)
	}
	for i := range rules {
		r := &rules[i]
		take(&r.Name)
		take(&r.Exe)
		take(&r.Cgroup)
		take(&r.User)
		take(&r.Group)
	}
}

// parseChunk reads consecutive items of the rules list into rules (one
// each), from text, which starts on line.
func parseChunk(text []byte, line int, rules []Rule) bool {
	n, ok := plainItems(text, line, func(k int, item *yaml.Node) bool { // parse_plain.go
		if k >= len(rules) {
			return false
		}
		r, _, err := parseRule(item)
		rules[k] = r
		return err == nil
	})
	if ok && n == len(rules) {
		return true
	}
	var doc yaml.Node
	if yaml.Unmarshal(text, &doc) != nil || len(doc.Content) != 1 {
		return false
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode || len(seq.Content) != len(rules) {
		return false
	}
	moveLines(seq, line-1)
	items, err := list(field{key: "rules", val: seq})
	if err != nil {
		return false
	}
	for i, item := range items {
		if rules[i], _, err = parseRule(item); err != nil {
			return false
		}
	}
	return true
}

func moveLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		moveLines(c, by)
	}
}
