package engine

// An EpochResolver says when its answers may have changed: while
// IdentityEpoch returns one epoch with ok, every exe path of the policy in
// force resolves as it did when that epoch began (the Linux backend: no
// inotify event since, and every path watched). ok is false when that is
// not known.
type EpochResolver interface {
	Resolver
	IdentityEpoch() (epoch uint64, ok bool)
}

// exeIndex is which rule of policy names each executable identity, as the
// validation of policy found at epoch: what a change of a few rules is
// checked against instead of resolving every rule again. It holds while
// the resolver's epoch stays and policy is the one in force.
type exeIndex struct {
	policy *Policy
	epoch  uint64
	// byID is the name of the rule naming each identity. (No map the
	// other way: a change drops the few names it moves with one pass over
	// this one, ~2 ms at 100,000 rules, instead of keeping 5 MB more.)
	byID map[FileID]string
}

// validateIndexed is validateFrom(old, p, r) keeping *ix, the index of the
// policy validated last. When ix indexes old, r says nothing moved since,
// and p is old with a few rules changed, only the changed rules are
// resolved and checked against the index; anything else (or any refusal,
// to be worded as ever) takes the full validation, which makes a new
// index. On success *ix indexes p (in place: it is only used while p is
// the policy in force).
func validateIndexed(old, p *Policy, r Resolver, ix **exeIndex) error {
	er, ok := r.(EpochResolver)
	if !ok {
		return validateFrom(old, p, r)
	}
	epoch, current := er.IdentityEpoch()
	if cur := *ix; current && cur != nil && cur.policy == old && cur.epoch == epoch {
		if done, err := validateDelta(cur, old, p, r); done {
			return err
		}
		// Left to the full check (a refusal to word): the index still
		// holds for old.
	} else {
		*ix = nil
	}
	exes, err := validateExes(old, p, r, nil)
	if err != nil {
		return err
	}
	if after, _ := er.IdentityEpoch(); after == epoch {
		n := &exeIndex{policy: p, epoch: epoch, byID: make(map[FileID]string, len(exes))}
		for id, i := range exes {
			n.byID[id] = p.Rules[i].Name
		}
		*ix = n
	}
	return nil
}

// validateDelta is validateFrom for p, old with the rules engine.RuleDelta
// reports changed, against ix, the index of old. done is false when it
// cannot tell (the full validation then decides and words any refusal).
func validateDelta(ix *exeIndex, old, p *Policy, r Resolver) (done bool, err error) {
	changed, removed, ok := RuleDelta(old, p)
	if !ok || !checkChanged(p, changed) {
		return false, nil
	}
	// The rules that go, or change: their identities are free for the
	// changed ones.
	leaving := make(map[string]bool, len(changed)+len(removed))
	for _, j := range removed {
		leaving[old.Rules[j].Name] = true
	}
	for _, i := range changed {
		leaving[p.Rules[i].Name] = true
	}
	r = onePass(r)
	ids := make([]FileID, len(changed))
	has := make([]bool, len(changed))
	var check []int
	for k, i := range changed {
		rule := &p.Rules[i]
		switch {
		case rule.User != "" || rule.Group != "":
			return false, nil // accounts: the full check
		case rule.Exe == "":
			continue
		}
		id, ok, err := r.Identify(rule.Exe)
		if err != nil {
			return false, nil
		}
		check = append(check, i)
		if !ok {
			continue
		}
		if owner, taken := ix.byID[id]; taken && !leaving[owner] {
			return false, nil // two rules name one file: refused by the full check
		}
		for k2 := range k {
			if has[k2] && ids[k2] == id {
				return false, nil
			}
		}
		ids[k], has[k] = id, true
	}
	if i, err := firstNotRunnable(p.Rules, check, nil); err != nil {
		return true, refuse(p.Rules[i].Line, "%v", err)
	}
	for id, name := range ix.byID {
		if leaving[name] {
			delete(ix.byID, id)
		}
	}
	for k, i := range changed {
		if has[k] {
			ix.byID[ids[k]] = p.Rules[i].Name
		}
	}
	ix.policy = p
	return true, nil
}
