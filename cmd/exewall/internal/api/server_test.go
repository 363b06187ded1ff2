//go:build linux

package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// apiFixture serves the API on a Unix socket in a temporary directory for
// the test's own uid, in front of a manager on the in-memory backend.
type apiFixture struct {
	t      *testing.T
	socket string
	policy string
	m      *engine.Manager
	b      *enginetest.Backend
	hc     *http.Client
}

const fixturePolicy = "# kept\ndefault: allow\nrules:\n  - name: curl\n    exe: /usr/bin/curl\n    action: deny\n"

func newAPIFixture(t *testing.T, opts Options) *apiFixture {
	t.Helper()
	dir := t.TempDir()
	f := &apiFixture{t: t, socket: filepath.Join(dir, "api.sock"), policy: filepath.Join(dir, "policy.yaml")}
	if err := os.WriteFile(f.policy, []byte(fixturePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	f.b = enginetest.New(16)
	f.m = engine.NewManager(engine.ManagerConfig{Backend: f.b, PolicyFile: f.policy})
	if err := f.m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts.Manager, opts.AllowUID = f.m, os.Getuid()
	go func() { done <- Serve(ctx, l, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		f.m.Close()
	})
	f.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", f.socket)
		},
		DisableKeepAlives: true,
	}}
	return f
}

// request sends a request and returns the status and the decoded error.
func (f *apiFixture) request(method, path string, body io.Reader) (int, client.ErrorBody) {
	f.t.Helper()
	req, err := http.NewRequest(method, "http://exewall"+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var e client.ErrorBody
	if resp.StatusCode >= 300 {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			f.t.Fatalf("%s %s: %d answer is not a JSON error: %v", method, path, resp.StatusCode, err)
		}
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, e
}

// unchanged checks that nothing was changed: the policy in force, the
// file, and no apply reached the backend since applies was read.
func (f *apiFixture) unchanged(applies int) {
	f.t.Helper()
	if data, _ := os.ReadFile(f.policy); string(data) != fixturePolicy {
		f.t.Fatalf("policy file changed:\n%s", data)
	}
	want, _ := engine.Parse([]byte(fixturePolicy))
	if got := f.m.Policy(); !reflect.DeepEqual(engine.ViewPolicy(got), engine.ViewPolicy(want)) {
		f.t.Fatalf("policy in force changed: %+v", engine.ViewPolicy(got))
	}
	if n := f.b.Applies(); n != applies {
		f.t.Fatalf("%d applies reached the backend, want %d", n, applies)
	}
}

func TestMalformedRequestsRefused(t *testing.T) {
	f := newAPIFixture(t, Options{})
	applies := f.b.Applies()
	for _, tc := range []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"POST", "/v1/rules", ``, 400, "empty body"},
		{"POST", "/v1/rules", `{`, 400, "unexpected EOF"},
		{"POST", "/v1/rules", `not json`, 400, "invalid character"},
		{"POST", "/v1/rules", `{"exe":"/usr/bin/wget","action":"deny","colour":"red"}`, 400, `unknown field "colour"`},
		{"POST", "/v1/rules", `{"exe":"/usr/bin/wget","action":"deny"} {"exe":"/bin/sh","action":"deny"}`, 400, "more than one JSON value"},
		{"POST", "/v1/rules", `{"exe":"/usr/bin/wget","action":"deny"} trailing`, 400, "invalid character"},
		{"POST", "/v1/rules", `{"exe":42,"action":"deny"}`, 400, "cannot unmarshal number"},
		{"POST", "/v1/rules", `{"exe":"/usr/bin/wget","action":"maybe"}`, 400, "action"},
		{"POST", "/v1/rules", `{"exe":"/usr/bin/wget","action":"deny","allow":["10.0.0.0/8 port 99999"]}`, 400, "port"},
		{"POST", "/v1/rules", `{"action":"deny"}`, 400, ""},
		{"POST", "/v1/rules", `{"name":"bad name!","exe":"/usr/bin/wget","action":"deny"}`, 400, "name"},
		{"POST", "/v1/rules", `[]`, 400, "cannot unmarshal array"},
		{"PUT", "/v1/default", `{"action":"sometimes"}`, 400, "sometimes"},
		{"PUT", "/v1/default", `{"action":"deny","x":1}`, 400, "unknown field"},
		{"PUT", "/v1/mode", `{"mode":"loud"}`, 400, "loud"},
		{"PUT", "/v1/mode", `null`, 400, ""},
		{"POST", "/v1/apply", `{"policy":"default: nope\n"}`, 400, "line 1"},
		{"POST", "/v1/apply", `{"policy":"rules: []\n","confirm_within":-5}`, 400, "negative"},
		{"POST", "/v1/apply", `{"policy":7}`, 400, "cannot unmarshal number"},
		{"GET", "/v1/violations?since=yesterday", ``, 400, "since"},
		{"DELETE", "/v1/rules", ``, 400, "no rule named"},
		{"DELETE", "/v1/rules?name=nosuch", ``, 404, "no such rule"},
	} {
		t.Run(tc.method+" "+tc.path+" "+tc.body, func(t *testing.T) {
			code, e := f.request(tc.method, tc.path, strings.NewReader(tc.body))
			if code != tc.code || e.Error == "" || !strings.Contains(e.Error, tc.says) {
				t.Fatalf("answer %d %q, want %d saying %q", code, e.Error, tc.code, tc.says)
			}
			f.unchanged(applies)
		})
	}
	// Nothing the router does not know reaches a handler.
	for _, rq := range [][2]string{{"GET", "/v1/nosuch"}, {"PATCH", "/v1/rules"}, {"GET", "/v1/apply"}} {
		req, _ := http.NewRequest(rq[0], "http://exewall"+rq[1], strings.NewReader(`{"action":"deny"}`))
		resp, err := f.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 405 {
			t.Errorf("%s %s: %d, want 404 or 405", rq[0], rq[1], resp.StatusCode)
		}
	}
	f.unchanged(applies)
}

func TestOversizedRequestRefused(t *testing.T) {
	f := newAPIFixture(t, Options{})
	applies := f.b.Applies()
	// A valid apply whose policy text pushes the body past the bound.
	pad := "#" + strings.Repeat("x", maxBody) + "\n"
	body, _ := json.Marshal(client.ApplyRequest{Policy: pad + "default: deny\nrules: []\n"})
	code, e := f.request("POST", "/v1/apply", strings.NewReader(string(body)))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(e.Error, "larger than") {
		t.Fatalf("oversized apply: %d %q", code, e.Error)
	}
	f.unchanged(applies)

	// Headers past the bound.
	req, _ := http.NewRequest("GET", "http://exewall/v1/status", nil)
	req.Header.Set("X-Pad", strings.Repeat("y", 2*maxHeaderBytes))
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d", resp.StatusCode)
	}
	f.unchanged(applies)

	// The API still answers.
	if code, e := f.request("GET", "/v1/status", nil); code != 200 {
		t.Fatalf("status after refusals: %d %q", code, e.Error)
	}
}

// TestSlowClientsRefused: a client that dribbles its headers or its body
// (slowloris) is cut off, changes nothing, and holds no one else up.
func TestSlowClientsRefused(t *testing.T) {
	f := newAPIFixture(t, Options{HeaderTimeout: 200 * time.Millisecond, BodyTimeout: 400 * time.Millisecond})
	applies := f.b.Applies()
	dial := func() net.Conn {
		c, err := net.Dial("unix", f.socket)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// A safety net against a server that never cuts us off, not a
		// performance bound.
		c.SetReadDeadline(time.Now().Add(time.Minute))
		return c
	}

	t.Run("headers never finished", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST /v1/rules HTTP/1.1\r\nHost: exewall\r\nContent-Type: application/json\r\n")
		// No blank line ever comes: the server must close the connection.
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("server did not close the connection: %v", err)
		}
		f.unchanged(applies)
	})

	t.Run("body never finished", func(t *testing.T) {
		c := dial()
		body := `{"exe":"/usr/bin/wget","action":"deny"}`
		fmt.Fprintf(c, "POST /v1/rules HTTP/1.1\r\nHost: exewall\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			len(body)+100, body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body: %v", err)
		}
		var e client.ErrorBody
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(e.Error, "not received in time") {
			t.Fatalf("stalled body: %d %q", resp.StatusCode, e.Error)
		}
		f.unchanged(applies)
	})

	t.Run("others are served meanwhile", func(t *testing.T) {
		var stalled []net.Conn
		for range 50 {
			c := dial()
			fmt.Fprint(c, "GET /v1/status HTTP/1.1\r\n")
			stalled = append(stalled, c)
		}
		if code, e := f.request("GET", "/v1/status", nil); code != 200 {
			t.Fatalf("status with 50 stalled clients: %d %q", code, e.Error)
		}
		for _, c := range stalled {
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("stalled client not cut off: %v", err)
			}
		}
		f.unchanged(applies)
	})
}
