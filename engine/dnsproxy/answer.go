// Package dnsproxy is exewall's DNS forwarder for name entries (DESIGN.md
// "Destination entries"). The kernel side sends a rule's DNS queries to it;
// it forwards each query unchanged to the server the program asked, learns
// the addresses of the answer, puts them in force through a Learner, and
// only then releases the answer, unchanged, to the program. It is pure Go
// and OS independent: which rule asked and which server it addressed come
// from an Origin, and what "in force" means is the Learner's.
package dnsproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Limits of what one answer may teach: a longer CNAME chain or more
// addresses than this is cut (the rest is not bound, so it is denied, never
// allowed), which bounds the work and memory one answer costs.
const (
	maxChain = 8
	maxAddrs = 64
)

// Record is one address an answer gave for the name asked: the CNAME chain
// that led to it (the asked name first, lower case, no trailing dot) and the
// smallest TTL along the way, in seconds.
type Record struct {
	Names []string
	Addr  netip.Addr
	TTL   uint32
}

// Answer is what ParseAnswer reads from a DNS response.
type Answer struct {
	ID        uint16
	Question  string // the name asked, lower case, no trailing dot
	Type      dnsmessage.Type
	RCode     dnsmessage.RCode
	Truncated bool
	Records   []Record
}

// errNotResponse is returned for a message that is not a DNS response.
var errNotResponse = errors.New("not a dns response")

// ParseAnswer reads a DNS response: its question, and the A and AAAA
// records reachable from the question's name through CNAME records of the
// answer section (names compared case-insensitively). Records for names not
// on the chain are ignored: an answer cannot teach a name nobody asked.
func ParseAnswer(msg []byte) (Answer, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return Answer{}, fmt.Errorf("parse dns header: %w", err)
	}
	if !h.Response {
		return Answer{}, errNotResponse
	}
	a := Answer{ID: h.ID, RCode: h.RCode, Truncated: h.Truncated}
	qs, err := p.AllQuestions()
	if err != nil {
		return Answer{}, fmt.Errorf("parse dns question: %w", err)
	}
	if len(qs) != 1 {
		return Answer{}, fmt.Errorf("dns response has %d questions, want 1", len(qs))
	}
	a.Question = canon(qs[0].Name)
	a.Type = qs[0].Type
	if h.RCode != dnsmessage.RCodeSuccess {
		return a, nil
	}
	type addrRR struct {
		owner string
		addr  netip.Addr
		ttl   uint32
	}
	cnames := map[string]dnsmessage.Resource{}
	var addrs []addrRR
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			if h.Truncated {
				break // a truncated answer may end mid-record
			}
			return Answer{}, fmt.Errorf("parse dns answer: %w", err)
		}
		owner := canon(rh.Name)
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = p.SkipAnswer()
		case rh.Type == dnsmessage.TypeA:
			var r dnsmessage.AResource
			if r, err = p.AResource(); err == nil && len(addrs) < maxAddrs {
				addrs = append(addrs, addrRR{owner, netip.AddrFrom4(r.A), rh.TTL})
			}
		case rh.Type == dnsmessage.TypeAAAA:
			var r dnsmessage.AAAAResource
			if r, err = p.AAAAResource(); err == nil && len(addrs) < maxAddrs {
				addrs = append(addrs, addrRR{owner, netip.AddrFrom16(r.AAAA).Unmap(), rh.TTL})
			}
		case rh.Type == dnsmessage.TypeCNAME:
			var r dnsmessage.CNAMEResource
			if r, err = p.CNAMEResource(); err == nil {
				if _, dup := cnames[owner]; !dup && len(cnames) < maxChain*4 {
					cnames[owner] = dnsmessage.Resource{Header: rh, Body: &r}
				}
			}
		default:
			err = p.SkipAnswer()
		}
		if err != nil {
			if h.Truncated {
				break
			}
			return Answer{}, fmt.Errorf("parse dns answer: %w", err)
		}
	}
	// Follow the chain from the question: each name, and the smallest TTL
	// so far (a binding lasts no longer than its weakest link).
	chain := []string{a.Question}
	ttls := []uint32{^uint32(0)}
	for len(chain) < maxChain {
		rr, ok := cnames[chain[len(chain)-1]]
		if !ok {
			break
		}
		next := canon(rr.Body.(*dnsmessage.CNAMEResource).CNAME)
		if contains(chain, next) {
			break // a loop
		}
		chain = append(chain, next)
		ttls = append(ttls, min(ttls[len(ttls)-1], rr.Header.TTL))
	}
	for _, rr := range addrs {
		for i, n := range chain {
			if n == rr.owner {
				a.Records = append(a.Records, Record{Names: chain[: i+1 : i+1], Addr: rr.addr, TTL: min(ttls[i], rr.ttl)})
				break
			}
		}
	}
	return a, nil
}

// canon is a name as ParseAnswer reports it: lower case, no trailing dot.
func canon(n dnsmessage.Name) string {
	return strings.ToLower(strings.TrimSuffix(n.String(), "."))
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// queryInfo reads the ID and question of a query, for a SERVFAIL reply and
// to check that the answer is for it.
func queryInfo(msg []byte) (dnsmessage.Header, dnsmessage.Question, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return h, dnsmessage.Question{}, fmt.Errorf("parse dns query: %w", err)
	}
	if h.Response {
		return h, dnsmessage.Question{}, errors.New("parse dns query: a response, not a query")
	}
	q, err := p.Question()
	if err != nil {
		return h, q, fmt.Errorf("parse dns query: %w", err)
	}
	return h, q, nil
}

// servfail builds the SERVFAIL answer to a query: the program sees a DNS
// failure, never an answer whose addresses are not in force.
func servfail(h dnsmessage.Header, q dnsmessage.Question) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: dnsmessage.RCodeServerFailure})
	b.EnableCompression()
	if b.StartQuestions() == nil {
		b.Question(q)
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
