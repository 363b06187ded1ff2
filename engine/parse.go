package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PolicyError is a refusal of a policy, naming the line at fault (0 when the
// policy was not read from a file).
type PolicyError struct {
	Line int
	Msg  string
}

func (e *PolicyError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

func refuse(line int, format string, args ...any) *PolicyError {
	return &PolicyError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

var (
	policyFields = []string{"default", "mode", "default_inbound", "resolvers", "rules"}
	ruleFields   = []string{"name", "exe", "cgroup", "user", "group", "action", "audit", "allow", "deny"}
)

// Parse decodes and validates a policy file. It is strict: unknown fields,
// wrong types, aliases, several documents and anything checkRule refuses are
// errors, each a *PolicyError naming the line. An empty file is DefaultPolicy.
// What needs the OS (executables, users) is left to Validate.
func Parse(data []byte) (p *Policy, err error) {
	// The walk below never panics on its own; this guards the
	// daemon against a decoder bug fed a hostile file.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, refuse(0, "invalid yaml: %v", r)
		}
	}()
	if p, ok := parseItems(data); ok { // a large file (parse_items.go)
		return p, nil
	}
	return parseTree(data)
}

// parseTree is Parse through a YAML tree of the whole file.
func parseTree(data []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return DefaultPolicy(), nil
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(err)
	default:
		return nil, refuse(extra.Line, "a second yaml document; a policy file holds one")
	}
	if len(doc.Content) != 1 {
		return DefaultPolicy(), nil
	}
	return parsePolicy(doc.Content[0])
}

// EmptyPolicy reports whether data holds no policy at all: nothing, only
// blank lines and comments, or a document that is null ("---", "~"). Parse
// takes such data as DefaultPolicy; the Manager refuses it as a file
// (ErrEmptyPolicyFile). Data that is not valid YAML is not empty: Parse
// says what is wrong with it.
func EmptyPolicy(data []byte) (empty bool) {
	defer func() {
		if recover() != nil {
			empty = false // Parse refuses it, with the guard it has
		}
	}()
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	if startsPlain(data) {
		return false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return true
	}
	if err != nil || !errors.Is(dec.Decode(&extra), io.EOF) {
		return false // not ours to judge: Parse refuses it
	}
	return len(doc.Content) == 0 || len(doc.Content) == 1 && isNull(doc.Content[0])
}

// startsPlain says whether the first line of data that is neither blank
// nor a comment starts with a letter and is no null: the document then holds
// a mapping or a scalar other than null (or is invalid), so it is not empty,
// and a policy of thousands of rules is not decoded twice to tell.
func startsPlain(data []byte) bool {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		c := line[0] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
		word := line
		if i := bytes.IndexAny(line, " \t"); i >= 0 {
			word = line[:i]
		}
		switch string(word) {
		case "null", "Null", "NULL":
			return false
		}
		return true
	}
	return false
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns the decoder's "yaml: line N: msg" into a PolicyError.
func yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return refuse(n, "invalid yaml: %s", m[2])
	}
	return refuse(0, "invalid yaml: %s", strings.TrimPrefix(msg, "yaml: "))
}

func parsePolicy(root *yaml.Node) (*Policy, error) {
	p := DefaultPolicy()
	if err := checkNode(root); err != nil {
		return nil, err
	}
	if isNull(root) {
		return p, nil
	}
	fields, err := mapping(root, "policy", policyFields)
	if err != nil {
		return nil, err
	}
	for _, f := range fields {
		switch f.key {
		case "default":
			s, err := scalar(f)
			if err != nil {
				return nil, err
			}
			if p.Default, err = ParseAction(s); err != nil {
				return nil, refuse(f.val.Line, "default: %v", err)
			}
		case "default_inbound":
			s, err := scalar(f)
			if err != nil {
				return nil, err
			}
			if p.DefaultInbound, err = ParseAction(s); err != nil {
				return nil, refuse(f.val.Line, "default_inbound: %v", err)
			}
			p.InboundSet = true
		case "resolvers":
			items, err := list(f)
			if err != nil {
				return nil, err
			}
			for _, item := range items {
				s, err := scalar(field{key: "resolvers entry", val: item})
				if err != nil {
					return nil, err
				}
				ap, err := ParseResolver(s)
				if err != nil {
					return nil, refuse(item.Line, "resolvers: %v", err)
				}
				p.Resolvers = append(p.Resolvers, ap)
			}
		case "mode":
			s, err := scalar(f)
			if err != nil {
				return nil, err
			}
			if p.Mode, err = ParseMode(s); err != nil {
				return nil, refuse(f.val.Line, "mode: %v", err)
			}
		case "rules":
			items, err := list(f)
			if err != nil {
				return nil, err
			}
			// Each rule is checked as soon as it is read, so the error
			// reported is the first one in file order.
			var lines []map[string]int
			c := newChecker(func(i int, field string) int { return fieldLine(lines[i], field) }, len(items))
			for _, item := range items {
				r, l, err := parseRule(item)
				if err != nil {
					return nil, err
				}
				p.Rules = append(p.Rules, r)
				lines = append(lines, l)
				if err := c.add(p.Rules, len(p.Rules)-1); err != nil {
					return nil, err
				}
			}
		}
	}
	return p, nil
}

// parseRule decodes one rule. lines maps each field present to the line of
// its value ("" to the rule's own line) so later checks can blame it.
func parseRule(n *yaml.Node) (Rule, map[string]int, error) {
	r := Rule{Line: n.Line}
	lines := map[string]int{"": n.Line}
	if n.Kind != yaml.MappingNode {
		return r, nil, refuse(n.Line, "a rule must be a mapping, got %s", kindName(n))
	}
	fields, err := mapping(n, "rule", ruleFields)
	if err != nil {
		return r, nil, err
	}
	hasAction := false
	for _, f := range fields {
		lines[f.key] = f.val.Line
		switch f.key {
		case "name", "exe", "cgroup", "user", "group":
			s, err := scalar(f)
			if err != nil {
				return r, nil, err
			}
			switch f.key {
			case "name":
				r.Name = s
			case "exe":
				r.Exe = s
			case "cgroup":
				// Refuse what CleanCgroup would hide before cleaning.
				if err := checkCgroup(s); err != nil {
					return r, nil, refuse(f.val.Line, "%v", err)
				}
				r.Cgroup = CleanCgroup(s)
			case "user":
				r.User = s
			case "group":
				r.Group = s
			}
		case "action":
			s, err := scalar(f)
			if err != nil {
				return r, nil, err
			}
			if r.Action, err = ParseAction(s); err != nil {
				return r, nil, refuse(f.val.Line, "action: %v", err)
			}
			hasAction = true
		case "audit":
			if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!bool" {
				return r, nil, refuse(f.val.Line, "audit: want true or false, got %s", kindName(f.val))
			}
			if err := f.val.Decode(&r.Audit); err != nil {
				return r, nil, refuse(f.val.Line, "audit: want true or false")
			}
		case "allow", "deny":
			dests, err := parseDests(f)
			if err != nil {
				return r, nil, err
			}
			if f.key == "allow" {
				r.Allow = dests
			} else {
				r.Deny = dests
			}
		}
	}
	if !hasAction && r.Name != "" {
		return r, nil, refuse(n.Line, "rule %q has no action (want allow, deny or local-only)", r.Name)
	}
	if !hasAction {
		return r, nil, refuse(n.Line, "rule has no name and no action")
	}
	return r, lines, nil
}

func parseDests(f field) ([]Dest, error) {
	items, err := list(f)
	if err != nil {
		return nil, err
	}
	var out []Dest
	for _, item := range items {
		s, err := scalar(field{key: f.key + " entry", val: item})
		if err != nil {
			return nil, err
		}
		d, err := ParseDest(s)
		if err != nil {
			return nil, refuse(item.Line, "%s: %v", f.key, err)
		}
		d.Line = item.Line
		out = append(out, d)
	}
	return out, nil
}

// field is one key: value pair of a mapping.
type field struct {
	key string
	val *yaml.Node
}

// mapping returns n's pairs, refusing unknown and repeated keys.
func mapping(n *yaml.Node, what string, known []string) ([]field, error) {
	if n.Kind != yaml.MappingNode {
		return nil, refuse(n.Line, "the %s must be a mapping, got %s", what, kindName(n))
	}
	var out []field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := checkNode(k); err != nil {
			return nil, err
		}
		if err := checkNode(v); err != nil {
			return nil, err
		}
		if k.Kind != yaml.ScalarNode {
			return nil, refuse(k.Line, "field names must be plain strings, got %s", kindName(k))
		}
		if !contains(known, k.Value) {
			return nil, refuse(k.Line, "unknown field %q in the %s (want %s)", k.Value, what, oneOf(known))
		}
		if first, dup := seen[k.Value]; dup {
			return nil, refuse(k.Line, "field %q given twice in one %s (first at line %d)", k.Value, what, first)
		}
		seen[k.Value] = k.Line
		out = append(out, field{k.Value, v})
	}
	return out, nil
}

// list returns a sequence's items; null (a key with nothing after it) is empty.
func list(f field) ([]*yaml.Node, error) {
	if isNull(f.val) {
		return nil, nil
	}
	if f.val.Kind != yaml.SequenceNode {
		return nil, refuse(f.val.Line, "%s: want a list, got %s", f.key, kindName(f.val))
	}
	for _, item := range f.val.Content {
		if err := checkNode(item); err != nil {
			return nil, err
		}
	}
	return f.val.Content, nil
}

// scalar returns a string value. Plain numbers count as text (user: 1000);
// other typed values must be quoted to say they are meant as text.
func scalar(f field) (string, error) {
	n := f.val
	if isNull(n) {
		return "", refuse(n.Line, "%s has no value", f.key)
	}
	if n.Kind != yaml.ScalarNode {
		return "", refuse(n.Line, "%s: want a string, got %s", f.key, kindName(n))
	}
	switch n.ShortTag() {
	case "!!str", "!!int":
		return n.Value, nil
	}
	return "", refuse(n.Line, "%s: want a string, got %s (quote it)", f.key, kindName(n))
}

// checkNode refuses aliases and tags beyond YAML's core schema: the policy
// is plain data, and an alias would let a small file expand without bound.
func checkNode(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return refuse(n.Line, "yaml aliases are not supported in a policy")
	}
	switch t := n.ShortTag(); t {
	case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!map", "!!seq":
		return nil
	case "!!merge":
		return refuse(n.Line, "yaml merge keys (<<) are not supported in a policy")
	default:
		return refuse(n.Line, "unsupported yaml tag %s", t)
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!bool":
		return "a boolean"
	case "!!int", "!!float":
		return "a number"
	case "!!timestamp":
		return "a timestamp"
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "a " + n.ShortTag() + " value"
}

func fieldLine(lines map[string]int, field string) int {
	if l, ok := lines[field]; ok {
		return l
	}
	return lines[""]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func oneOf(list []string) string {
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}
