package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// FuzzDecodeRequest feeds arbitrary bodies to every request decoder the
// server uses. None may panic; each either returns a value that passes
// its own checks or an error the server answers 4xx with (a bad request
// or an engine.PolicyError), never anything it would answer 500 with.
//
//	go test -run '^$' -fuzz FuzzDecodeRequest -fuzztime 10s ./cmd/exewall/internal/api/
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"name":"curl","exe":"/usr/bin/curl","action":"deny"}`,
		`{"exe":"/usr/bin/rclone","action":"deny","allow":["203.0.113.0/24 port 443 tcp","2001:db8::/32 port 443"]}`,
		`{"cgroup":"/system.slice/nginx.service","action":"local-only","deny":["10.0.0.0/8 port 22"]}`,
		`{"user":"_build","action":"deny","audit":true}`,
		`{"action":"deny"}`,
		`{"mode":"audit"}`,
		`{"policy":"default: allow\nrules: []\n","confirm_within":1000000000}`,
		`{"policy":"rules:\n  - name: x\n    exe: /bin/x\n    action: deny\n"}`,
		`{"action":"deny"} {"action":"allow"}`,
		`{"action":"deny","extra":1}`,
		`{"confirm_within":-1}`,
		`{"allow":["::ffff:1.2.3.4/128 port 1-65535 udp"],"action":"deny","exe":"/x"}`,
		``, `null`, `[]`, `"x"`, `{`, `{"name":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ok := func(what string, err error) {
			t.Helper()
			var pe *engine.PolicyError
			if err != nil && !errors.Is(err, errBadRequest) && !errors.As(err, &pe) {
				t.Fatalf("%s: error %v (%T) would be answered 500", what, err, err)
			}
			if err != nil && strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("%s: empty error message", what)
			}
		}
		if r, err := decodeRule(bytes.NewReader(body)); err == nil {
			// What the decoder accepts names exactly one selector.
			n := 0
			for _, sel := range []string{r.Exe, r.Cgroup, r.User, r.Group} {
				if sel != "" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("rule with %d selectors accepted: %+v", n, r)
			}
		} else {
			ok("rule", err)
		}
		if a, _, err := decodeAction(bytes.NewReader(body)); err == nil {
			if _, perr := engine.ParseAction(a.String()); perr != nil {
				t.Fatalf("action %v does not round-trip", a)
			}
		} else {
			ok("action", err)
		}
		_, err := decodeMode(bytes.NewReader(body))
		ok("mode", err)
		if req, err := decodeApply(bytes.NewReader(body)); err == nil {
			if req.ConfirmWithin < 0 {
				t.Fatalf("negative confirm_within accepted")
			}
			// The manager parses the policy text next; it must not panic.
			if _, err := engine.Parse([]byte(req.Policy)); err != nil {
				ok("apply policy", err)
			}
		} else {
			ok("apply", err)
		}
		_, err = decodeSince(string(body))
		ok("since", err)
	})
}
