package engine

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// plainItems reads consecutive items of the rules list from text, which
// starts on line, when every line of it has the plain form exewall writes
// and people mostly write: "- key: value" items with one key a line, each
// value on its key's line (plain, or quoted without escapes) or a list of
// such values below it, comments and blank lines. It makes each item's
// YAML nodes as yaml.v3 would and hands them to each in turn (k counts
// from 0; the nodes are reused for the next item), and returns how many
// there were. It stops with ok false at the first line of another form, or
// when each does: the caller then has yaml.v3 read the text.
//
// Written by hand, not a library's: yaml.v3's scanner and parser were 90%
// of the parse of a 100,000-rule file (1.9 of 2.1 s of CPU). This reads
// only the lines it is sure of, and TestPlainItemsAreYAMLs holds its trees
// to yaml.v3's.
func plainItems(text []byte, line int, each func(k int, item *yaml.Node) bool) (n int, ok bool) {
	var it plainItem
	ind := -1 // the items' column
	for off, no := 0, line; off < len(text); no++ {
		l := text[off:]
		if end := bytes.IndexByte(l, '\n'); end >= 0 {
			l, off = l[:end], off+end+1
		} else {
			off = len(text)
		}
		body := bytes.TrimLeft(l, " ")
		col := len(l) - len(body)
		if len(body) == 0 {
			continue
		}
		if body[0] == '#' {
			if !commentText(body) {
				return n, false
			}
			continue
		}
		if ind < 0 {
			ind = col
		}
		dash := body[0] == '-' && len(body) > 1 && body[1] == ' '
		var rest []byte
		if dash {
			rest = bytes.TrimLeft(body[1:], " ")
		}
		switch {
		case col == ind && dash:
			if it.started {
				if !each(n, it.node()) {
					return n, false
				}
				n++
			}
			it.reset(col + len(body) - len(rest))
			if !it.key(rest, no) {
				return n, false
			}
		case !it.started || col < it.keyCol:
			return n, false
		case dash && it.listItem(col, no, rest, col+len(body)-len(rest)):
		case col == it.keyCol && !dash:
			if !it.key(body, no) {
				return n, false
			}
		default:
			return n, false
		}
	}
	if !it.started || !each(n, it.node()) {
		return n, false
	}
	return n + 1, true
}

// plainScalar is a value as read from its line.
type plainScalar struct {
	value     string
	style     yaml.Style // 0 (plain), or single or double quoted
	line, col int        // col from 1, as yaml.Node's Column
}

// plainField is one key of an item: its value on its line, or a list below
// it (open until its items, if any, end).
type plainField struct {
	key       plainScalar
	val       plainScalar
	open      bool // nothing after the colon: a list below, or null
	list      []plainScalar
	listLine  int
	listCol   int // from 0; the list's dashes' column
	listStart int // where list begins in the item's items
}

// plainItem gathers one item's keys, then makes its nodes in storage reused
// from item to item (parseRule keeps none of them).
type plainItem struct {
	started bool
	keyCol  int // from 0
	fields  []plainField
	items   []plainScalar // the list values of every field, in order
	nodes   []yaml.Node
	ptrs    []*yaml.Node
}

func (it *plainItem) reset(keyCol int) {
	it.started, it.keyCol = true, keyCol
	it.fields, it.items = it.fields[:0], it.items[:0]
}

// key reads "key: value" or "key:" (s starts at the key), on line no.
func (it *plainItem) key(s []byte, no int) bool {
	k := 0
	for k < len(s) && (s[k] >= 'a' && s[k] <= 'z' || s[k] == '_') {
		k++
	}
	// (A key of over 1024 characters is no key to yaml.v3; a field name is
	// short.)
	if k == 0 || k > 32 || k == len(s) || s[k] != ':' || k+1 < len(s) && s[k+1] != ' ' {
		return false
	}
	f := plainField{key: plainScalar{value: fieldName(s[:k]), line: no, col: it.keyCol + 1}, listCol: -1}
	rest := bytes.TrimLeft(s[k+1:], " ")
	if len(rest) == 0 || rest[0] == '#' && commentText(rest) {
		f.open = true
	} else {
		var ok bool
		if f.val, ok = plainValue(rest); !ok {
			return false
		}
		f.val.line, f.val.col = no, it.keyCol+len(s)-len(rest)+1
	}
	it.fields = append(it.fields, f)
	return true
}

// listItem takes a "- value" line at col as the next item of the list the
// last key opened, if it is one; valCol is where value starts (from 0).
func (it *plainItem) listItem(col, no int, value []byte, valCol int) bool {
	if len(it.fields) == 0 {
		return false
	}
	f := &it.fields[len(it.fields)-1]
	if !f.open || col < it.keyCol || f.listCol >= 0 && col != f.listCol || len(value) == 0 || value[0] == '#' {
		return false
	}
	v, ok := plainValue(value)
	if !ok {
		return false
	}
	if f.listCol < 0 {
		f.listCol, f.listLine, f.listStart = col, no, len(it.items)
	}
	v.line, v.col = no, valCol+1
	it.items = append(it.items, v)
	f.list = it.items[f.listStart:len(it.items):len(it.items)]
	return true
}

// node makes the item's nodes, in place of the last item's.
func (it *plainItem) node() *yaml.Node {
	nodes := 1
	for _, f := range it.fields {
		nodes += 2
		if f.listCol >= 0 {
			nodes += 1 + len(f.list)
		}
	}
	if cap(it.nodes) < nodes {
		it.nodes, it.ptrs = make([]yaml.Node, nodes*2), make([]*yaml.Node, nodes*2)
	}
	// ptrs holds every node's children: nodes-1 of them in all.
	ns, ps := it.nodes[:0], it.ptrs[:0]
	add := func(n yaml.Node) *yaml.Node {
		ns = append(ns, n)
		return &ns[len(ns)-1]
	}
	first := it.fields[0].key
	m := add(yaml.Node{Kind: yaml.MappingNode, Line: first.line, Column: first.col})
	lo := len(ps)
	ps = ps[:lo+2*len(it.fields)]
	m.Content = ps[lo:len(ps):len(ps)]
	for i, f := range it.fields {
		m.Content[2*i] = add(f.key.node())
		switch {
		case f.listCol >= 0:
			seq := add(yaml.Node{Kind: yaml.SequenceNode, Line: f.listLine, Column: f.listCol + 1})
			lo := len(ps)
			ps = ps[:lo+len(f.list)]
			seq.Content = ps[lo:len(ps):len(ps)]
			for j, v := range f.list {
				seq.Content[j] = add(v.node())
			}
			m.Content[2*i+1] = seq
		case f.open:
			// yaml.v3 places an empty value where the next token starts;
			// only its emptiness matters here (list takes it as no list,
			// scalar refuses it, and then yaml.v3 reads the text).
			m.Content[2*i+1] = add(yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: f.key.line, Column: f.key.col})
		default:
			m.Content[2*i+1] = add(f.val.node())
		}
	}
	return m
}

func (s plainScalar) node() yaml.Node {
	// The tag is what Node.ShortTag says of a node without one: the value
	// resolved as yaml.v3's parser resolves a plain scalar, or a string for
	// a quoted one. Stored, it is not resolved again at each look.
	n := yaml.Node{Kind: yaml.ScalarNode, Style: s.style, Value: s.value, Line: s.line, Column: s.col}
	if s.style == 0 && plainString(s.value) {
		n.Tag = "!!str"
	} else {
		n.Tag = n.ShortTag()
	}
	return n
}

// plainString reports whether yaml.v3 takes the plain scalar v for a
// string without trying it for a number, boolean, null or timestamp: when
// it starts with none of "+-.0123456789<~yYnNtTfFoO" (its resolve table),
// or holds a '/', which no number, timestamp or keyword does. A name, a
// path or a CIDR entry is one; resolving each was a tenth of the parse.
func plainString(v string) bool {
	if v == "" {
		return false
	}
	switch c := v[0]; {
	case c >= '0' && c <= '9', strings.IndexByte("+-.<~yYnNtTfFoO", c) >= 0:
		return strings.IndexByte(v, '/') >= 0
	}
	return true
}

// fieldName is a rule's field name as one of ruleFields, without an
// allocation, or the name itself.
func fieldName(b []byte) string {
	for _, f := range ruleFields {
		if f == string(b) {
			return f
		}
	}
	return string(b)
}

// plainValue reads the value that starts s (which does not start with a
// space) and ends its line: a plain scalar of printable ASCII without flow
// indicators, or a single- or double-quoted one without escapes, then at
// most a comment. Anything else is not read here.
func plainValue(s []byte) (plainScalar, bool) {
	if q := s[0]; q == '\'' || q == '"' {
		end := bytes.IndexByte(s[1:], q)
		if end < 0 {
			return plainScalar{}, false
		}
		inner, rest := s[1:1+end], s[2+end:]
		if !printable(inner) || q == '"' && bytes.IndexByte(inner, '\\') >= 0 {
			return plainScalar{}, false
		}
		if t := bytes.TrimLeft(rest, " "); len(t) > 0 && (t[0] != '#' || len(t) == len(rest) || !commentText(t)) {
			return plainScalar{}, false
		}
		style := yaml.SingleQuotedStyle
		if q == '"' {
			style = yaml.DoubleQuotedStyle
		}
		return plainScalar{value: string(inner), style: style}, true
	}
	// One pass: the value ends at a comment (" #"), and holds printable
	// ASCII but flow indicators, no '#' of its own and no ':' that ends it
	// or is followed by a space (a key).
	end := len(s)
	for i := 0; i < end; i++ {
		switch c := s[i]; {
		case c == '#' && i > 0 && s[i-1] == ' ':
			if !commentText(s[i:]) {
				return plainScalar{}, false
			}
			end = i
		case c < ' ' || c > '~' || c == '#' || c == ',' || c == '[' || c == ']' || c == '{' || c == '}':
			return plainScalar{}, false
		}
	}
	v := bytes.TrimRight(s[:end], " ")
	if len(v) == 0 || v[len(v)-1] == ':' || bytes.Contains(v, []byte(": ")) {
		return plainScalar{}, false
	}
	switch v[0] {
	case '-', '?', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return plainScalar{}, false
	case ':':
		if len(v) == 1 || v[1] == ' ' {
			return plainScalar{}, false
		}
	}
	return plainScalar{value: string(v)}, true
}

// printable reports whether b is printable ASCII, spaces included.
func printable(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c > '~' {
			return false
		}
	}
	return true
}

// commentText reports whether a comment holds only what yaml.v3 reads as
// one: no control characters, no invalid UTF-8, and none of the characters
// YAML takes for a line break (U+0085, U+2028, U+2029) or a byte order mark.
func commentText(b []byte) bool {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if c < ' ' && c != '\t' || c == 0x7f {
				return false
			}
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError || r < 0xa0 || r == 0x2028 || r == 0x2029 || r == 0xfeff || r >= 0xfffe && r <= 0xffff {
			return false
		}
		b = b[size:]
	}
	return true
}
