package engine

import (
	"bytes"
	"slices"
	"strings"
	"unsafe"

	"go.yaml.in/yaml/v3"
)

// EditPolicyFileFrom is EditPolicyFile for a file src known to say old: when
// only rules changed, it edits the text of those rules alone (each one
// through a YAML tree of that rule, which keeps its comments) and leaves
// every other byte of the file as it is, so its cost follows what changed,
// not the size of the policy. Anything it does not recognise with
// certainty (a default or mode change, flow style, anchors, tabs, a rule
// list it cannot map onto old) goes through EditPolicyFile.
func EditPolicyFileFrom(src []byte, old, p *Policy) (out []byte, lost bool, err error) {
	if data, ok := editRulesText(src, old, p); ok {
		return data, false, nil
	}
	return EditPolicyFile(src, p)
}

// ruleItem is one item of the file's top-level rules list.
type ruleItem struct {
	start int    // where its head comment lines start (its dash line when none)
	dash  int    // where its "- " line starts
	end   int    // just past the newline of its last line
	name  []byte // a slice of the file
}

func editRulesText(src []byte, old, p *Policy) ([]byte, bool) {
	out, _, ok := editRulesScanned(src, old, p, nil)
	return out, ok
}

// scannedText is what scanRules found in src, kept with it: the scan of the
// policy file in force, so that the next edit does not scan it again.
type scannedText struct {
	src    []byte
	items  []ruleItem
	indent int
}

// of says whether sc is the scan of src itself (the same bytes in memory).
func (sc *scannedText) of(src []byte) bool {
	return sc != nil && len(sc.src) == len(src) && len(src) > 0 && &sc.src[0] == &src[0]
}

// editRulesScanned is editRulesText using sc when it is src's scan, and
// returning the scan of the text it makes (the items it kept moved by
// what came before them, the ones it wrote scanned alone).
func editRulesScanned(src []byte, old, p *Policy, sc *scannedText) ([]byte, *scannedText, bool) {
	if old == nil || old.Default != p.Default || old.Mode != p.Mode || old.DefaultInbound != p.DefaultInbound ||
		old.InboundSet != p.InboundSet || !slices.Equal(old.Resolvers, p.Resolvers) || len(old.Rules) == 0 || len(p.Rules) == 0 {
		return nil, nil, false
	}
	var items []ruleItem
	var indent int
	if sc.of(src) {
		items, indent = sc.items, sc.indent
	} else {
		var ok bool
		if items, indent, ok = scanRules(src, len(old.Rules)); !ok {
			return nil, nil, false
		}
	}
	if len(items) != len(old.Rules) {
		return nil, nil, false
	}
	for i, it := range items {
		if string(it.name) != old.Rules[i].Name {
			return nil, nil, false
		}
	}
	// Where p's rule named name is in old: after a CLI edit, the next
	// rule, or the one after it; a map of every name only otherwise.
	var at map[string]int
	last := -1
	find := func(name string) (int, bool) {
		for i := last + 1; i < len(items) && i <= last+2; i++ {
			if old.Rules[i].Name == name {
				return i, true
			}
		}
		if at == nil {
			at = make(map[string]int, len(items))
			for i := range old.Rules {
				at[old.Rules[i].Name] = i
			}
		}
		i, ok := at[name]
		return i, ok
	}
	// What becomes of each old item, and what goes before it: kept as it
	// is for all but the few items an edit names.
	type edit struct {
		replace *Rule
		before  []*Rule
	}
	keep := make([]bool, len(items))
	edits := map[int]edit{}
	var tail []*Rule
	for j := range p.Rules {
		r := &p.Rules[j]
		i, ok := find(r.Name)
		if !ok {
			tail = append(tail, r)
			continue
		}
		if i <= last {
			return nil, nil, false // reordered
		}
		last = i
		keep[i] = true
		e := edit{before: tail}
		tail = nil
		if !sameRule(&old.Rules[i], r) {
			e.replace = r
		}
		if e.before != nil || e.replace != nil {
			edits[i] = e
		}
	}
	var out bytes.Buffer
	out.Grow(len(src) + 256)
	// The new text's items, with each name as an offset into it until the
	// text is whole.
	next := make([]ruleItem, 0, len(p.Rules))
	nameAt := make([]int, 0, len(p.Rules))
	srcOff := func(b []byte) int {
		return int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(src))))
	}
	// written adds the item of text, a rendered rule just written at base.
	written := func(text []byte, base, start int) bool {
		wrapped := append([]byte("rules:\n"), text...)
		its, _, ok := scanRules(wrapped, 1)
		if !ok || len(its) != 1 {
			return false
		}
		const shift = len("rules:\n")
		it := its[0]
		next = append(next, ruleItem{start: start, dash: base + it.dash - shift, end: base + it.end - shift})
		nameAt = append(nameAt, base+int(uintptr(unsafe.Pointer(unsafe.SliceData(it.name)))-uintptr(unsafe.Pointer(unsafe.SliceData(wrapped))))-shift)
		return true
	}
	pos := 0
	for i, it := range items {
		e := edits[i]
		for _, r := range e.before {
			out.Write(src[pos:it.start])
			pos = it.start
			text, ok := renderRule(nil, r, indent, p)
			if !ok {
				return nil, nil, false
			}
			if !written(text, out.Len(), out.Len()) {
				return nil, nil, false
			}
			out.Write(text)
		}
		switch {
		case !keep[i]:
			out.Write(src[pos:it.start])
			pos = it.end
		case e.replace != nil:
			out.Write(src[pos:it.dash])
			text, ok := renderRule(src[it.dash:it.end], e.replace, indent, p)
			if !ok {
				return nil, nil, false
			}
			if !written(text, out.Len(), out.Len()-(it.dash-it.start)) {
				return nil, nil, false
			}
			out.Write(text)
			pos = it.end
		default: // copied as it is with what follows
			d := out.Len() - pos
			next = append(next, ruleItem{start: it.start + d, dash: it.dash + d, end: it.end + d})
			nameAt = append(nameAt, srcOff(it.name)+d)
		}
	}
	end := items[len(items)-1].end
	out.Write(src[pos:end])
	for _, r := range tail {
		text, ok := renderRule(nil, r, indent, p)
		if !ok {
			return nil, nil, false
		}
		if !written(text, out.Len(), out.Len()) {
			return nil, nil, false
		}
		out.Write(text)
	}
	out.Write(src[end:])
	data := out.Bytes()
	if len(next) != len(p.Rules) {
		return data, nil, true
	}
	for k := range next {
		n := len(p.Rules[k].Name)
		if nameAt[k] < 0 || nameAt[k]+n > len(data) {
			return data, nil, true
		}
		next[k].name = data[nameAt[k] : nameAt[k]+n]
	}
	return data, &scannedText{src: data, items: next, indent: indent}, true
}

// sameRule compares what the file says of a rule (not its line).
func sameRule(a, b *Rule) bool {
	if a.Name != b.Name || a.Selector != b.Selector || a.Action != b.Action || a.Audit != b.Audit {
		return false
	}
	// Every field of an entry but its line (names and directions too).
	eq := func(x, y Dest) bool {
		x.Line, y.Line = 0, 0
		return x == y
	}
	return slices.EqualFunc(a.Allow, b.Allow, eq) && slices.EqualFunc(a.Deny, b.Deny, eq)
}

// renderRule writes rule r as one list item at indent, editing the item
// text was (nil: a new item) so that its comments stay. The result is
// parsed back and must say r.
func renderRule(was []byte, r *Rule, indent int, p *Policy) ([]byte, bool) {
	var seq *yaml.Node
	if was != nil {
		var doc yaml.Node
		if err := yaml.Unmarshal(dedent(was, indent), &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
			return nil, false
		}
		seq = doc.Content[0]
		if seq.Kind != yaml.SequenceNode || len(seq.Content) != 1 || seq.Content[0].Kind != yaml.MappingNode {
			return nil, false
		}
	} else {
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	want := ViewRule(*r)
	editRuleNode(seq.Content[0], want)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if enc.Encode(seq) != nil || enc.Close() != nil {
		return nil, false
	}
	var back []RuleView
	if err := yaml.Unmarshal(buf.Bytes(), &back); err != nil || len(back) != 1 {
		return nil, false
	}
	bp, err := PolicyView{Default: p.Default.String(), Mode: p.Mode.String(), Rules: back}.Policy()
	if err != nil || len(bp.Rules) != 1 || !sameRule(&bp.Rules[0], r) {
		return nil, false
	}
	pad := strings.Repeat(" ", indent)
	var out bytes.Buffer
	for line := range bytes.Lines(buf.Bytes()) {
		if len(bytes.TrimSpace(line)) > 0 {
			out.WriteString(pad)
		}
		out.Write(line)
	}
	return out.Bytes(), true
}

// dedent removes n leading spaces from every line that has them.
func dedent(b []byte, n int) []byte {
	if n == 0 {
		return b
	}
	var out bytes.Buffer
	pad := strings.Repeat(" ", n)
	for line := range bytes.Lines(b) {
		out.Write(bytes.TrimPrefix(line, []byte(pad)))
	}
	return out.Bytes()
}

// scanRules finds the items of the top-level block list under "rules:" by
// their indentation, and each item's name. ok is false for anything it
// does not understand for certain: the caller then edits a YAML tree.
//
// hint is how many items the caller expects (the list is allocated once).
func scanRules(src []byte, hint int) (items []ruleItem, indent int, ok bool) {
	if len(src) == 0 || src[len(src)-1] != '\n' || bytes.IndexByte(src, '\t') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
		return nil, 0, false
	}
	in := false  // inside the rules block
	ind := -1    // the items' indent, once known
	keyInd := -1 // the current item's keys' indent
	head := -1   // start of the comment lines just above the next item
	for off := 0; off < len(src); {
		nl := bytes.IndexByte(src[off:], '\n')
		line := src[off : off+nl]
		next := off + nl + 1
		trimmed := bytes.TrimLeft(line, " ")
		col := len(line) - len(trimmed)
		switch {
		case bytes.HasPrefix(line, []byte("---")) || bytes.HasPrefix(line, []byte("...")):
			return nil, 0, false
		case len(trimmed) == 0:
			head = -1
		case trimmed[0] == '#':
			if in && head < 0 {
				head = off
			}
		case !in:
			if col == 0 && bytes.HasPrefix(line, []byte("rules:")) {
				if rest := bytes.TrimSpace(line[len("rules:"):]); len(rest) > 0 && rest[0] != '#' {
					return nil, 0, false // "rules: []" and the like
				}
				if items != nil {
					return nil, 0, false
				}
				in, items = true, make([]ruleItem, 0, hint)
			}
			head = -1
		case col == 0 && trimmed[0] != '-':
			in, head = false, -1 // the next top-level key
		default:
			if hasWary(trimmed) && !plainEnough(trimmed) {
				return nil, 0, false
			}
			if ind < 0 {
				ind = col
			}
			isDash := trimmed[0] == '-' && (len(trimmed) == 1 || trimmed[1] == ' ')
			switch {
			case col == ind && isDash:
				start := off
				if head >= 0 {
					start = head
				}
				items = append(items, ruleItem{start: start, dash: off, end: next})
				keyInd = -1
				rest := bytes.TrimLeft(trimmed[1:], " ")
				if len(rest) > 0 && rest[0] != '#' {
					keyInd = col + len(trimmed) - len(rest)
					if !itemKey(&items[len(items)-1], rest) {
						return nil, 0, false
					}
				}
			case col > ind && len(items) > 0:
				it := &items[len(items)-1]
				it.end = next
				if keyInd < 0 {
					keyInd = col
				}
				if col == keyInd && !itemKey(it, trimmed) {
					return nil, 0, false
				}
			default:
				return nil, 0, false
			}
			head = -1
		}
		off = next
	}
	if len(items) == 0 {
		return nil, 0, false
	}
	for _, it := range items {
		if len(it.name) == 0 {
			return nil, 0, false
		}
	}
	return items, ind, true
}

// plainEnough allows the characters scanRules is wary of where they are
// harmless: in a comment, or inside a quoted scalar that closes on its
// line, like the wildcard name '*.example.com'.
func plainEnough(s []byte) bool {
	if i := bytes.Index(s, []byte(" #")); i >= 0 {
		s = s[:i]
	}
	return !waryOutsideQuotes(s)
}

// waryOutsideQuotes is hasWary of s but for the quoted scalars that open
// where a value may start (the line's start, after "- " or ": ") and close
// on the line: in one, those characters are text.
func waryOutsideQuotes(s []byte) bool {
	valueStart := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if valueStart && (c == '\'' || c == '"') {
			if end := quoteEnd(s, i); end > 0 {
				i, valueStart = end, false
				continue
			}
		}
		if wary[c] {
			return true
		}
		switch {
		case c == ' ':
		case (c == '-' || c == ':') && i+1 < len(s) && s[i+1] == ' ':
			valueStart = true
		default:
			valueStart = false
		}
	}
	return false
}

// quoteEnd is where the quoted scalar opening at s[i] closes, or -1 when it
// does not close on s: a single-quoted one at a quote not doubled, a
// double-quoted one at a quote not escaped.
func quoteEnd(s []byte, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case q == '"' && s[j] == '\\':
			j++
		case s[j] != q:
		case q == '\'' && j+1 < len(s) && s[j+1] == '\'':
			j++
		default:
			return j
		}
	}
	return -1
}

// wary are the characters of YAML's anchors, aliases, tags, block scalars
// and flow collections, which scanRules leaves to the YAML parser.
var wary = [256]bool{'&': true, '*': true, '!': true, '|': true, '>': true, '{': true, '[': true}

// hasWary is bytes.ContainsAny(s, "&*!|>{[") without building the set at
// every line of a large file.
func hasWary(s []byte) bool {
	for _, c := range s {
		if wary[c] {
			return true
		}
	}
	return false
}

// itemKey reads a "key: value" line of an item's mapping; a name must be
// a plain scalar to be taken.
func itemKey(it *ruleItem, kv []byte) bool {
	k, v, found := bytes.Cut(kv, []byte(":"))
	if !found {
		return len(kv) > 0 && kv[0] == '-' // an entry of allow/deny
	}
	if string(k) != "name" {
		return true
	}
	if len(it.name) != 0 {
		return false
	}
	if i := bytes.Index(v, []byte(" #")); i >= 0 {
		v = v[:i]
	}
	v = bytes.TrimSpace(v)
	if len(v) == 0 || bytes.ContainsAny(v, "\"'`@%:#,") {
		return false
	}
	it.name = v
	return true
}
