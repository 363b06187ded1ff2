package windows

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/exewall/exewall/engine"
)

// check refuses, all at once, what this backend cannot enforce faithfully.
func check(p *engine.Policy) error {
	var errs []error
	if err := checkAction(p.Default); err != nil {
		errs = append(errs, fmt.Errorf("default: %w", err))
	}
	if err := checkAction(p.DefaultInbound); err != nil {
		errs = append(errs, fmt.Errorf("default_inbound: %w", err))
	}
	exes := map[string]string{}
	for i := range p.Rules {
		r := &p.Rules[i]
		fail := func(err error) { errs = append(errs, fmt.Errorf("rule %q: %w", r.Name, err)) }
		if n := countSet(r.Exe, r.Cgroup, r.User, r.Group); n > 1 {
			fail(errors.New("sets more than one of exe, cgroup, user and group"))
			continue
		}
		switch {
		case r.Cgroup != "":
			fail(fmt.Errorf("cgroup: selects Linux cgroups, which Windows does not have: %w", engine.ErrNotSupported))
		case r.Exe != "":
			if !isWindowsAbs(r.Exe) {
				fail(fmt.Errorf("exe %q is not an absolute Windows path (C:\\... or \\\\server\\share\\...)", r.Exe))
				break
			}
			key := strings.ToLower(strings.ReplaceAll(r.Exe, "/", `\`))
			if other, dup := exes[key]; dup {
				fail(fmt.Errorf("exe %q is already covered by rule %q", r.Exe, other))
			}
			exes[key] = r.Name
		case r.User != "":
			if isNumeric(r.User) {
				fail(fmt.Errorf("user: %q is a numeric uid; Windows accounts have no uid, name the account or give its SID (S-1-5-...): %w", r.User, engine.ErrNotSupported))
			}
		case r.Group != "":
			if isNumeric(r.Group) {
				fail(fmt.Errorf("group: %q is a numeric gid; Windows groups have no gid, name the group or give its SID (S-1-5-...): %w", r.Group, engine.ErrNotSupported))
			}
		default:
			fail(errors.New("selects nothing (set exe:, user: or group:)"))
		}
		if err := checkAction(r.Action); err != nil {
			fail(err)
		}
		for _, d := range append(append([]engine.Dest(nil), r.Allow...), r.Deny...) {
			if !d.Prefix.IsValid() || d.PortLo > d.PortHi || (d.PortLo == 0) != (d.PortHi == 0) {
				fail(fmt.Errorf("invalid destination %q", d))
			}
		}
	}
	if err := engine.RefuseNames(p, "Windows would redirect the rule's DNS to a local forwarder with ALE_CONNECT_REDIRECT (docs/windows.md)"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func checkAction(a engine.Action) error {
	switch a {
	case engine.ActionAllow, engine.ActionDeny, engine.ActionLocalOnly:
		return nil
	}
	return fmt.Errorf("unknown action %s", a)
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

func isNumeric(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
