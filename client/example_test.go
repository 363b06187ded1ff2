package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// fakeDaemon serves a few of the API's endpoints in process, in front of
// an in-memory Manager, so that the Examples below run without a daemon.
// The real server is cmd/exewall's; its tests drive it with this client.
func fakeDaemon() (*httptest.Server, *engine.Manager) {
	m := engine.NewManager(engine.ManagerConfig{Backend: enginetest.New(16)})
	if err := m.Load(context.Background()); err != nil {
		panic(err)
	}
	reply := func(w http.ResponseWriter, v any, err error) {
		code := http.StatusOK
		switch {
		case errors.Is(err, engine.ErrNotSupported):
			code = http.StatusNotImplemented
		case err != nil:
			code = http.StatusBadRequest
		}
		if err != nil {
			v = client.ErrorBody{Error: err.Error()}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/rules", func(w http.ResponseWriter, r *http.Request) {
		reply(w, engine.ViewPolicy(m.Policy()).Rules, nil)
	})
	mux.HandleFunc("POST /v1/rules", func(w http.ResponseWriter, r *http.Request) {
		var rv engine.RuleView
		json.NewDecoder(r.Body).Decode(&rv)
		named := rv
		if named.Name == "" {
			named.Name = "unnamed" // the manager names it
		}
		rule, err := named.Rule()
		if err == nil {
			rule.Name = rv.Name
			rule, err = m.AddRule(r.Context(), rule)
		}
		reply(w, engine.ViewRule(rule), err)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := m.Status(r.Context())
		reply(w, st, err)
	})
	mux.HandleFunc("GET /v1/names", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, fmt.Errorf("names: %w", engine.ErrNotSupported))
	})
	return httptest.NewServer(mux), m
}

// Example runs against an in-process server: add a rule, list the rules,
// read the status.
func Example() {
	srv, m := fakeDaemon()
	defer srv.Close()
	defer m.Close()
	c := client.NewWithHTTP(srv.Client(), srv.URL)
	ctx := context.Background()

	r, err := c.AddRule(ctx, engine.RuleView{Exe: "/usr/bin/curl", Action: "deny"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("rule %s: %s\n", r.Name, r)
	rules, err := c.Rules(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rules {
		fmt.Println("in force:", r.Name)
	}
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.Backend, st.Mode, st.Default, st.Rules)

	_, err = c.AddRule(ctx, engine.RuleView{Name: "wget", Exe: "/usr/bin/wget", Action: "maybe"})
	var refused *client.Error
	if errors.As(err, &refused) {
		fmt.Println(refused.Status, refused.Message)
	}
	// Output:
	// rule curl: deny exe /usr/bin/curl
	// in force: curl
	// fake enforce allow 1
	// 400 rule "wget": action: unknown action "maybe" (want allow, deny or local-only)
}

func ExampleClient_Names() {
	srv, m := fakeDaemon()
	defer srv.Close()
	defer m.Close()
	c := client.NewWithHTTP(srv.Client(), srv.URL)

	_, err := c.Names(context.Background())
	fmt.Println(errors.Is(err, engine.ErrNotSupported))
	// Output:
	// true
}

func ExampleNew() {
	c := client.New("") // the daemon on client.DefaultSocket
	_, err := c.Status(context.Background())
	var down *client.DialError
	if errors.As(err, &down) && errors.Is(err, client.ErrNoDaemon) {
		fmt.Println("start the daemon first:", err)
	}
}

func ExampleClient_Policy() {
	p, err := client.New("").Policy(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Printf("default %s, mode %s, %d rules\n", p.Default, p.Mode, len(p.Rules))
}

func ExampleClient_Rules() {
	rules, err := client.New("").Rules(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for _, r := range rules {
		fmt.Printf("%s: %s\n", r.Name, r)
	}
}

func ExampleClient_AddRule() {
	r, err := client.New("").AddRule(context.Background(), engine.RuleView{
		Exe: "/usr/bin/rclone", Action: "deny", Allow: []string{"203.0.113.0/24 port 443 tcp"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println("added", r.Name)
}

func ExampleClient_RemoveRule() {
	_, err := client.New("").RemoveRule(context.Background(), "/usr/bin/rclone")
	var refused *client.Error
	if errors.As(err, &refused) && refused.Status == http.StatusNotFound {
		fmt.Println("no such rule")
	}
}

func ExampleClient_SetDefault() {
	if err := client.New("").SetDefault(context.Background(), "local-only"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func ExampleClient_SetDefaultInbound() {
	// What programs no rule names accept: refused (409, errors.Is
	// engine.ErrWouldCut) while a server listens on a non-loopback address.
	err := client.New("").SetDefaultInbound(context.Background(), "deny")
	if errors.Is(err, engine.ErrWouldCut) {
		fmt.Fprintln(os.Stderr, err) // names each program, pid and port
	}
}

func ExampleClient_Forced() {
	// --force: deny sshd even though it listens now.
	c := client.New("").Forced()
	if _, err := c.AddRule(context.Background(), engine.RuleView{Exe: "/usr/sbin/sshd", Action: "deny"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func ExampleClient_SetMode() {
	if err := client.New("").SetMode(context.Background(), "audit"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func ExampleClient_Apply() {
	c := client.New("")
	ctx := context.Background()
	resp, err := c.Apply(ctx, []byte("default: deny\nrules: []\n"), 2*time.Minute)
	var refused *client.Error
	if errors.As(err, &refused) && refused.Line > 0 {
		fmt.Fprintf(os.Stderr, "line %d: %s\n", refused.Line, refused.Message)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(resp.Rules, "rules; confirm before", resp.ConfirmDeadline)
	// ... check that everything still works, then keep it:
	if err := c.Confirm(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func ExampleClient_Confirm() {
	if err := client.New("").Confirm(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err) // 409: no apply waits for confirmation
	}
}

func ExampleClient_Diff() {
	ch, err := client.New("").Diff(context.Background(), []byte("default: deny\nrules: []\n"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(len(ch.Added), "added,", len(ch.Removed), "removed,", len(ch.Changed), "changed")
}

func ExampleClient_Violations() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The last hour's violations, then each new one for a minute.
	for v, err := range client.New("").Violations(ctx, time.Now().Add(-time.Hour), true) {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Println(v.Verdict, v.Exe, v.Daddr, v.Dport)
	}
}

func ExampleClient_Sync() {
	drift, err := client.New("").Sync(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for _, d := range drift {
		fmt.Println(d.What, "repaired:", d.Repaired)
	}
}

func ExampleClient_Status() {
	st, err := client.New("").Status(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(st.Backend, st.AttachPoint, st.Rules, st.Counters.Denied)
}

func ExampleClient_StartLearning() {
	c := client.New("")
	ctx := context.Background()
	if _, err := c.StartLearning(ctx, 10*time.Minute, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for range 3 {
		time.Sleep(time.Second)
		rep, err := c.LearnStatus(ctx) // renews the lease
		if err != nil {
			break
		}
		fmt.Println(rep.Events, "attempts seen")
	}
	rep, err := c.StopLearning(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	os.WriteFile("learned.yaml", []byte(rep.Policy), 0o644)
}

func ExampleClient_LearnStatus() {
	rep, err := client.New("").LearnStatus(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // 404: no session
		return
	}
	fmt.Println(rep.Active, rep.Events)
}

func ExampleClient_StopLearning() {
	rep, err := client.New("").StopLearning(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Print(rep.Policy)
}
