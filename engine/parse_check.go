package engine

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest rule name accepted.
const MaxNameLen = 64

// lineOf names the line to blame for a field of rule i ("" for the rule
// itself). Parse knows every node's line; a policy built in code only has
// Rule.Line, often 0.
type lineOf func(i int, field string) int

func ruleLines(rules []Rule) lineOf {
	return func(i int, _ string) int { return rules[i].Line }
}

// checkPolicy refuses what no policy may hold, whatever the OS. Parse,
// Validate and Marshal all apply it, so a policy built by CLI edits is held
// to the same rules as one read from a file.
func checkPolicy(p *Policy) error {
	if p == nil {
		return refuse(0, "no policy")
	}
	if p.Default > ActionLocalOnly {
		return refuse(0, "default: unknown action %v", p.Default)
	}
	if p.Mode > ModeAudit {
		return refuse(0, "mode: unknown mode %d", p.Mode)
	}
	if p.DefaultInbound > ActionLocalOnly {
		return refuse(0, "default_inbound: unknown action %v", p.DefaultInbound)
	}
	for _, r := range p.Resolvers {
		if err := checkResolver(r); err != nil {
			return refuse(0, "resolvers: %v", err)
		}
	}
	c := newChecker(ruleLines(p.Rules), len(p.Rules))
	for i := range p.Rules {
		if err := c.add(p.Rules, i); err != nil {
			return err
		}
	}
	return nil
}

// checker refuses each rule on its own and against the rules before it.
type checker struct {
	at   lineOf
	seen map[seenKey]int // index of the first rule with it
}

// seenKey is what two rules may not share: a name, or the processes they
// select. (A struct, not "kind\x00key": 200,000 strings fewer to make for
// 100,000 rules.)
type seenKey struct{ kind, key string }

// newChecker makes a checker for about rules rules.
func newChecker(at lineOf, rules int) *checker {
	return &checker{at: at, seen: make(map[seenKey]int, 2*rules)}
}

func (c *checker) add(rules []Rule, i int) error {
	r := &rules[i]
	if err := c.checkRule(r, i); err != nil {
		return err
	}
	// Two rules may not share a name or select the same processes.
	kind, key, field := "name", r.Name, "name"
	if first, dup := c.seen[seenKey{kind, key}]; dup {
		return refuse(c.at(i, field), "duplicate rule name %q%s", r.Name, firstAt(c.at(first, "")))
	}
	c.seen[seenKey{kind, key}] = i
	switch {
	case r.Exe != "":
		kind, key, field = "executable", exeKey(r.Exe), "exe"
	case r.Cgroup != "":
		kind, key, field = "cgroup", CleanCgroup(r.Cgroup), "cgroup"
	case r.User != "":
		kind, key, field = "user", r.User, "user"
	default:
		kind, key, field = "group", r.Group, "group"
	}
	if first, dup := c.seen[seenKey{kind, key}]; dup {
		return refuse(c.at(i, field), "rules %q and %q name the same %s %s", rules[first].Name, r.Name, kind, key)
	}
	c.seen[seenKey{kind, key}] = i
	return nil
}

func (c *checker) checkRule(r *Rule, i int) error {
	if r.Name == "" {
		return refuse(c.at(i, "name"), "rule has no name")
	}
	if err := checkName(r.Name); err != nil {
		return refuse(c.at(i, "name"), "%v", err)
	}
	// Blame the selector given last: it is the one too many.
	var set []string
	last := ""
	for _, s := range []struct{ field, val string }{{"exe", r.Exe}, {"cgroup", r.Cgroup}, {"user", r.User}, {"group", r.Group}} {
		if s.val == "" {
			continue
		}
		set = append(set, s.field)
		if last == "" || c.at(i, s.field) >= c.at(i, last) {
			last = s.field
		}
	}
	switch {
	case len(set) == 0:
		return refuse(c.at(i, ""), "rule %q selects nothing; give one of exe, cgroup, user or group", r.Name)
	case len(set) > 1:
		return refuse(c.at(i, last), "rule %q has both %s; a rule selects by exactly one of exe, cgroup, user or group", r.Name, strings.Join(set, " and "))
	}
	var err error
	switch {
	case r.Exe != "":
		err = checkExe(r.Exe)
	case r.Cgroup != "":
		err = checkCgroup(r.Cgroup)
	case r.User != "":
		err = checkText("user", r.User)
	default:
		err = checkText("group", r.Group)
	}
	if err != nil {
		return refuse(c.at(i, set[0]), "%v", err)
	}
	if r.Action > ActionLocalOnly {
		return refuse(c.at(i, "action"), "rule %q: unknown action %v", r.Name, r.Action)
	}
	for _, l := range []struct {
		field string
		dests []Dest
	}{{"allow", r.Allow}, {"deny", r.Deny}} {
		for _, d := range l.dests {
			if err := checkDest(d); err != nil {
				line := d.Line
				if line == 0 {
					line = c.at(i, l.field)
				}
				return refuse(line, "%s: %v", l.field, err)
			}
		}
	}
	return nil
}

// checkName keeps names usable as CLI arguments, map keys and labels in every
// backend: ASCII letters, digits, '.', '_', '-', not starting with '-' or '.'
// (a flag, a hidden file).
func checkName(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("rule name %q is longer than %d characters", s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			(c == '.' || c == '-') && i > 0
		if !ok {
			return fmt.Errorf("rule name %q: use letters, digits, '.', '_' and '-' only, not starting with '.' or '-'", s)
		}
	}
	return nil
}

// checkExe wants an absolute path, in Unix or Windows form whatever the OS
// parsing it, so a policy file reads the same everywhere.
func checkExe(s string) error {
	if err := checkText("exe", s); err != nil {
		return err
	}
	if !isAbsPath(s) {
		return fmt.Errorf("exe %q is not an absolute path", s)
	}
	return nil
}

func isAbsPath(s string) bool {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, `\\`) {
		return true
	}
	return len(s) >= 3 && s[1] == ':' && (s[2] == '\\' || s[2] == '/') &&
		(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}

// exeKey folds the spellings of one path that need no file system to see:
// "//" and "/./". ".." is kept, since it depends on symlinks; Validate
// compares what the paths resolve to.
func exeKey(s string) string {
	if !strings.HasPrefix(s, "/") {
		return strings.ToLower(strings.ReplaceAll(s, "/", `\`))
	}
	if !strings.Contains(s, "//") && !strings.Contains(s, "/./") && !strings.HasSuffix(s, "/.") && (len(s) == 1 || s[len(s)-1] != '/') {
		return s // already in this form: no allocation (it runs for every rule at every change)
	}
	var parts []string
	for _, part := range strings.Split(s, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	return "/" + strings.Join(parts, "/")
}

// checkCgroup wants a path from the cgroup mount's root; "." and ".." would
// name another cgroup than the text says.
func checkCgroup(s string) error {
	if err := checkText("cgroup", s); err != nil {
		return err
	}
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("cgroup %q must start with / (a path below the cgroup v2 mount)", s)
	}
	for _, part := range strings.Split(s, "/") {
		if part == "." || part == ".." {
			return fmt.Errorf("cgroup %q must not contain \".\" or \"..\" elements", s)
		}
	}
	return nil
}

// checkText refuses what no policy file (UTF-8 YAML) or OS name can hold.
func checkText(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", field, s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%s %q contains a NUL byte", field, s)
	}
	return nil
}

// checkDest holds a Dest built in code to what ParseDest would produce.
func checkDest(d Dest) error {
	if d.IsName() {
		if d.Prefix.IsValid() {
			return fmt.Errorf("destination %s has both a name and a prefix", d.Name)
		}
		if c, err := ParseName(d.Name); err != nil || c != d.Name {
			return fmt.Errorf("destination name %q is not in canonical form", d.Name)
		}
		return checkPortsProto(d, d.Name)
	}
	if d.Dir > DirIn {
		return fmt.Errorf("destination %s: unknown direction %d", d.Prefix, d.Dir)
	}
	switch {
	case !d.Prefix.IsValid():
		return errors.New("destination has no prefix")
	case d.Prefix != d.Prefix.Masked():
		return fmt.Errorf("destination %s is not masked (want %s)", d.Prefix, d.Prefix.Masked())
	case d.Prefix.Addr().Is4In6() && d.Prefix.Bits() >= 96:
		return fmt.Errorf("destination %s is IPv4-mapped; give it as IPv4", d.Prefix)
	case d.Prefix.Addr().Zone() != "":
		return fmt.Errorf("destination %s has a zone", d.Prefix)
	}
	return checkPortsProto(d, d.Prefix.String())
}

func checkPortsProto(d Dest, what string) error {
	switch {
	case d.Dir > DirIn:
		return fmt.Errorf("destination %s: unknown direction %d", what, d.Dir)
	case d.Proto != ProtoAny && d.Proto != ProtoTCP && d.Proto != ProtoUDP:
		return fmt.Errorf("destination %s: protocol %d not supported (want tcp or udp)", what, d.Proto)
	case d.AnyPort():
	case d.PortLo == 0 || d.PortHi == 0 || d.PortLo > d.PortHi:
		return fmt.Errorf("destination %s: bad port range %d-%d", what, d.PortLo, d.PortHi)
	}
	return nil
}

func firstAt(line int) string {
	if line == 0 {
		return ""
	}
	return fmt.Sprintf(" (first at line %d)", line)
}

// maxAligned bounds how many rules changedRules reports changed or removed
// before the caller had better check the whole policy.
const maxAligned = 16

// changedRules returns, in order, the indices of p's rules that old does
// not hold as they are, when p is old with a few rules replaced in place,
// removed or appended: what a CLI edit makes. aligned is false for
// anything else (a reorder, a large edit, no old), and for a change of
// what the rules are checked against.
func changedRules(old, p *Policy) (changed []int, aligned bool) {
	if old == nil || p == nil {
		return nil, false
	}
	changed, _, aligned = alignRules(old, p)
	return changed, aligned
}

// alignRules walks old's and p's rules side by side: changed holds, in
// order, the indices of p's rules that old does not hold as they are,
// removed the indices of old's rules p no longer holds (removed, or
// replaced in place by a rule of another name). ok is false for anything
// but a few rules replaced in place, removed or appended (maxAligned).
func alignRules(old, p *Policy) (changed, removed []int, ok bool) {
	i, j := 0, 0
	for i < len(p.Rules) && j < len(old.Rules) {
		a, b := &p.Rules[i], &old.Rules[j]
		switch {
		case a.Name == b.Name:
			if !sameRule(a, b) {
				changed = append(changed, i)
			}
			i++
			j++
		case j+1 < len(old.Rules) && a.Name == old.Rules[j+1].Name:
			removed = append(removed, j) // old.Rules[j] was removed
			j++
		default:
			changed = append(changed, i) // replaced in place
			removed = append(removed, j)
			i++
			j++
		}
		if len(changed) > maxAligned || len(removed) > maxAligned {
			return nil, nil, false
		}
	}
	for ; i < len(p.Rules); i++ {
		changed = append(changed, i) // appended
	}
	for ; j < len(old.Rules); j++ {
		removed = append(removed, j)
	}
	if len(changed) > maxAligned || len(removed) > maxAligned {
		return nil, nil, false
	}
	return changed, removed, true
}

// checkChanged reports whether p passes checkPolicy, knowing that only the
// rules at changed differ from a policy that passed it. false means "not
// shown": the caller runs checkPolicy, which also words the refusal.
func checkChanged(p *Policy, changed []int) bool {
	if p.Default > ActionLocalOnly || p.Mode > ModeAudit || p.DefaultInbound > ActionLocalOnly {
		return false
	}
	for _, r := range p.Resolvers {
		if checkResolver(r) != nil {
			return false
		}
	}
	// (checkRule reads no seen map: none presized for every rule, 1.5 MB
	// and ~1 ms at 10,000 rules for each change.)
	c := newChecker(ruleLines(p.Rules), 0)
	for _, i := range changed {
		r := &p.Rules[i]
		if c.checkRule(r, i) != nil {
			return false
		}
		kind, key := selectorKey(r)
		for j := range p.Rules {
			if j == i {
				continue
			}
			o := &p.Rules[j]
			if o.Name == r.Name {
				return false
			}
			if selectorIs(o, kind, key) {
				return false
			}
		}
	}
	return true
}

// selectorKey is what checker.add compares to refuse two rules selecting
// the same processes.
func selectorKey(r *Rule) (kind, key string) {
	switch {
	case r.Exe != "":
		return "executable", exeKey(r.Exe)
	case r.Cgroup != "":
		return "cgroup", CleanCgroup(r.Cgroup)
	case r.User != "":
		return "user", r.User
	}
	return "group", r.Group
}
