package engine

import "bytes"

// Ahead is a policy file read and parsed in the background (ParseAhead).
type Ahead struct {
	done chan struct{}
	data []byte
	p    *Policy
	err  error
}

// ParseAhead reads and parses the policy file at path in the background,
// for the Manager whose Load follows (ManagerConfig.Ahead): a daemon starts
// it before its backend loads, so parsing a large policy overlaps the
// kernel's work instead of following it. Load uses the result only when
// the file still holds what was parsed, and otherwise parses again.
func ParseAhead(path string) *Ahead {
	a := &Ahead{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		data, err := ReadPolicyFile(path)
		if err != nil || EmptyPolicy(data) {
			return // Load says why
		}
		a.data = data
		a.p, a.err = Parse(data)
	}()
	return a
}

// parsed waits for the parse and returns its result when it was a parse
// of data; ok is false otherwise. The result is handed out once.
func (a *Ahead) parsed(data []byte) (p *Policy, ok bool, err error) {
	if a == nil {
		return nil, false, nil
	}
	<-a.done
	if a.data == nil || !bytes.Equal(a.data, data) {
		return nil, false, nil
	}
	p, err = a.p, a.err
	a.data, a.p, a.err = nil, nil, nil
	return p, true, err
}
