package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"

	"go.yaml.in/yaml/v3"
)

// DefaultPolicyFile is what a daemon writes when the policy file does not
// exist yet: DefaultPolicy with a header telling a newcomer what the file is.
var DefaultPolicyFile = []byte(`# exewall policy: which executables may reach which destinations.
#
# The daemon enforces exactly what this file says. Changes made with the
# exewall command (deny, allow, local-only, rule add, rm, default, mode) are
# written back here, keeping your comments; edits made here by hand are
# picked up when the file is saved (or on SIGHUP).
#
#   default: allow | deny | local-only   verdict for executables no rule names
#   mode:    enforce | audit             audit reports, never blocks
#
# Example rule:
#   rules:
#     - name: curl
#       exe: /usr/bin/curl
#       action: deny
default: allow
mode: enforce
rules: []
`)

// EditPolicyFile returns src rewritten to say p. It edits the YAML tree
// rather than re-rendering it, so the user's comments, the order of fields
// and the order of rules that stay are kept; new rules go at the end of the
// list, removed rules disappear with the comments attached to them. Rules
// are matched by name. When src is empty or not a policy mapping the result
// is Marshal(p) under the default header.
//
// The result always parses back to p: if the edited tree would not (a
// construct the editor does not understand), Marshal(p) is returned instead,
// and lost reports that the comments were dropped.
func EditPolicyFile(src []byte, p *Policy) (out []byte, lost bool, err error) {
	want := ViewPolicy(p)
	fresh := func(lost bool) ([]byte, bool, error) {
		data, err := Marshal(p)
		if err != nil {
			return nil, false, err
		}
		return data, lost, nil
	}
	var doc yaml.Node
	uerr := yaml.Unmarshal(src, &doc)
	if uerr == nil && (doc.Kind == 0 || doc.Kind == yaml.DocumentNode && len(doc.Content) == 0) {
		// Only comments: keep them above the new content.
		data, err := Marshal(p)
		if err != nil {
			return nil, false, err
		}
		head := bytes.TrimRight(src, "\n\t ")
		if len(head) == 0 {
			head = bytes.TrimRight(policyHeader(), "\n")
		}
		return append(append(head, '\n'), data...), false, nil
	}
	if uerr != nil || doc.Kind != yaml.DocumentNode ||
		len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return fresh(len(bytes.TrimSpace(src)) != 0)
	}
	root := doc.Content[0]
	editPolicyNode(root, want)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fresh(true)
	}
	if err := enc.Close(); err != nil {
		return fresh(true)
	}
	back, err := Parse(buf.Bytes())
	if err != nil || !reflect.DeepEqual(ViewPolicy(back), want) {
		return fresh(true)
	}
	return buf.Bytes(), false, nil
}

// policyHeader is the comment block of DefaultPolicyFile.
func policyHeader() []byte {
	i := bytes.Index(DefaultPolicyFile, []byte("\ndefault:"))
	return append([]byte(nil), DefaultPolicyFile[:i+1]...)
}

func editPolicyNode(root *yaml.Node, want PolicyView) {
	// default and mode are written when present, or when they differ from
	// what an absent key means.
	if i := keyIndex(root, "default"); i >= 0 || want.Default != ActionAllow.String() {
		setScalar(root, "default", want.Default, nil)
	}
	if i := keyIndex(root, "mode"); i >= 0 || want.Mode != ModeEnforce.String() {
		setScalar(root, "mode", want.Mode, []string{"default"})
	}
	if want.DefaultInbound != "" {
		setScalar(root, "default_inbound", want.DefaultInbound, []string{"default", "mode"})
	} else {
		removeKey(root, "default_inbound")
	}
	i := keyIndex(root, "rules")
	if i < 0 && len(want.Rules) == 0 {
		return
	}
	var seq *yaml.Node
	if i >= 0 {
		seq = root.Content[i+1]
		if seq.Kind != yaml.SequenceNode {
			// "rules:" with nothing after it, or something odd: replace.
			keep := seq
			seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", LineComment: keep.LineComment}
			root.Content[i+1] = seq
		}
	} else {
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		root.Content = append(root.Content, scalarNode("rules"), seq)
	}
	byName := map[string]*yaml.Node{}
	for _, n := range seq.Content {
		if n.Kind != yaml.MappingNode {
			continue
		}
		if j := keyIndex(n, "name"); j >= 0 {
			byName[n.Content[j+1].Value] = n
		}
	}
	var content []*yaml.Node
	for _, rv := range want.Rules {
		n := byName[rv.Name]
		if n == nil {
			n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		delete(byName, rv.Name) // a name appears once
		editRuleNode(n, rv)
		content = append(content, n)
	}
	seq.Content = content
	if len(content) == 0 {
		seq.Style = yaml.FlowStyle // "rules: []"
	} else {
		seq.Style &^= yaml.FlowStyle
	}
}

var ruleFieldOrder = []string{"name", "exe", "cgroup", "user", "group", "action", "audit", "allow", "deny"}

func editRuleNode(n *yaml.Node, rv RuleView) {
	n.Style &^= yaml.FlowStyle
	scalars := map[string]string{"name": rv.Name, "exe": rv.Exe, "cgroup": rv.Cgroup, "user": rv.User,
		"group": rv.Group, "action": rv.Action}
	for k, field := range ruleFieldOrder {
		before := ruleFieldOrder[:k]
		switch field {
		case "audit":
			if !rv.Audit {
				removeKey(n, field)
				continue
			}
			setValue(n, field, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}, before)
		case "allow", "deny":
			items := rv.Allow
			if field == "deny" {
				items = rv.Deny
			}
			if len(items) == 0 {
				removeKey(n, field)
				continue
			}
			setList(n, field, items, before)
		default:
			if scalars[field] == "" {
				removeKey(n, field)
				continue
			}
			setScalar(n, field, scalars[field], before)
		}
	}
}

func scalarNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// keyIndex returns the index of key's key node in mapping m, or -1.
func keyIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

func removeKey(m *yaml.Node, key string) {
	if i := keyIndex(m, key); i >= 0 {
		m.Content = append(m.Content[:i], m.Content[i+2:]...)
	}
}

// setScalar sets key to the string s, keeping the old node (and its
// comments) when the value is unchanged.
func setScalar(m *yaml.Node, key, s string, after []string) {
	if i := keyIndex(m, key); i >= 0 {
		v := m.Content[i+1]
		if v.Kind == yaml.ScalarNode && v.Value == s {
			return
		}
		nv := scalarNode(s)
		nv.LineComment, nv.HeadComment, nv.FootComment = v.LineComment, v.HeadComment, v.FootComment
		m.Content[i+1] = nv
		return
	}
	setValue(m, key, scalarNode(s), after)
}

// setList sets key to a list of strings, keeping the nodes (and comments)
// of items that stay.
func setList(m *yaml.Node, key string, items []string, after []string) {
	var old []*yaml.Node
	var seq *yaml.Node
	if i := keyIndex(m, key); i >= 0 && m.Content[i+1].Kind == yaml.SequenceNode {
		seq = m.Content[i+1]
		old = seq.Content
	} else {
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		setValue(m, key, seq, after)
	}
	used := make([]bool, len(old))
	var content []*yaml.Node
	for _, s := range items {
		var n *yaml.Node
		for j, o := range old {
			if !used[j] && o.Kind == yaml.ScalarNode && canonicalDest(o.Value) == s {
				n, used[j] = o, true
				break
			}
		}
		if n == nil {
			n = scalarNode(s)
		}
		content = append(content, n)
	}
	seq.Content = content
}

// canonicalDest renders a destination the way RuleView does, so "10.0.0.0/8
// port 443" written by hand matches its canonical spelling.
func canonicalDest(s string) string {
	d, err := ParseDest(s)
	if err != nil {
		return s
	}
	return d.String()
}

// setValue sets key to v, inserting a new key after the last of the keys in
// after that m has (or at the end), so fields keep the file's usual order.
func setValue(m *yaml.Node, key string, v *yaml.Node, after []string) {
	if i := keyIndex(m, key); i >= 0 {
		old := m.Content[i+1]
		v.LineComment = old.LineComment
		m.Content[i+1] = v
		return
	}
	at := -1
	for _, a := range after {
		if i := keyIndex(m, a); i > at {
			at = i
		}
	}
	pair := []*yaml.Node{scalarNode(key), v}
	// None of the keys that come before it present: it goes first.
	pos := 0
	if at >= 0 {
		pos = at + 2
	}
	m.Content = append(m.Content[:pos], append(pair, m.Content[pos:]...)...)
}

// WriteFileAtomic replaces path with data so that a reader (or a crash)
// sees the old content or the new, never a mix: write a temporary file in
// the same directory, fsync it, rename it over path, fsync the directory.
// A symlinked path (a ConfigMap's ..data, an /etc/alternatives link) has
// its target replaced and keeps the link. An existing file keeps its mode
// (config management may own it); a new one is 0600: a policy tells every
// reader which programs may reach what.
func WriteFileAtomic(path string, data []byte) error {
	f, err := prepareFileAtomic(path, data)
	if err != nil {
		return err
	}
	return f.commit()
}

// pendingFile is the new content of a file, written and synced beside it,
// that commit puts in its place (abort: removes it).
type pendingFile struct {
	path, tmp, target, dir string
}

// prepareFileAtomic is WriteFileAtomic up to the rename: data in a temporary
// file beside path's target, synced; path itself is not touched.
func prepareFileAtomic(path string, data []byte) (*pendingFile, error) {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		target = path
	} else if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	mode := fs.FileMode(0o600)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm()
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	return &pendingFile{path: path, tmp: tmp.Name(), target: target, dir: dir}, nil
}

// abort removes the prepared content; the file stays as it was.
func (f *pendingFile) abort() { os.Remove(f.tmp) }

// commit renames the prepared content over the file and syncs its
// directory.
func (f *pendingFile) commit() error {
	if err := os.Rename(f.tmp, f.target); err != nil {
		f.abort()
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	// The rename is durable only once the directory is; Windows cannot
	// open a directory for fsync, and NTFS journals the rename itself.
	if runtime.GOOS != "windows" {
		if d, err := os.Open(f.dir); err == nil {
			err = d.Sync()
			d.Close()
			if err != nil {
				return fmt.Errorf("write %s: fsync directory: %w", f.path, err)
			}
		}
	}
	return nil
}

// Writable reports whether path can be replaced by WriteFileAtomic: its
// directory (after symlinks) accepts a new file and the file, when it
// exists, opens for writing. Nothing is modified. The error says why not.
func Writable(path string) error {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		target = path
	} else if err != nil {
		return err
	}
	if f, err := os.OpenFile(target, os.O_WRONLY, 0); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, ".exewall-probe*")
	if err != nil {
		return err
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}

// MaxPolicyFile bounds what is read as a policy file: a policy is text
// written by people, and a runaway file must not exhaust the daemon.
const MaxPolicyFile = 16 << 20

// ReadPolicyFile reads the policy file at path, or standard input when path
// is "-", refusing more than MaxPolicyFile bytes.
func ReadPolicyFile(path string) ([]byte, error) {
	if path == "-" {
		return readLimited(os.Stdin, "standard input")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path)
}

func readLimited(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxPolicyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > MaxPolicyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, MaxPolicyFile)
	}
	return data, nil
}
