package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

type server struct {
	m        *engine.Manager
	log      *slog.Logger
	allowUID int
}

// Options configures Serve.
type Options struct {
	Manager *engine.Manager
	Log     *slog.Logger
	// AllowUID is the one user allowed to call: 0 (root) in the daemon;
	// tests that run unprivileged pass their own uid.
	AllowUID int
	// HeaderTimeout and BodyTimeout bound how long a client may take to
	// send its request headers and its whole request (slowloris): 0 means
	// 10 s and 60 s. IdleTimeout closes idle keep-alive connections (0: 60 s).
	HeaderTimeout, BodyTimeout, IdleTimeout time.Duration
}

// maxHeaderBytes bounds a request's headers; the API's are a few lines.
const maxHeaderBytes = 64 << 10

// Serve answers API requests on l until ctx is done. Connections from a
// peer other than opts.AllowUID are answered with 403 and change nothing.
func Serve(ctx context.Context, l net.Listener, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{m: opts.Manager, log: opts.Log, allowUID: opts.AllowUID}
	log := opts.Log
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/policy", s.policy)
	mux.HandleFunc("GET /v1/rules", s.rules)
	mux.HandleFunc("POST /v1/rules", s.addRule)
	mux.HandleFunc("DELETE /v1/rules", s.removeRule)
	mux.HandleFunc("PUT /v1/default", s.setDefault)
	mux.HandleFunc("PUT /v1/mode", s.setMode)
	mux.HandleFunc("POST /v1/apply", s.apply)
	mux.HandleFunc("POST /v1/diff", s.diff)
	mux.HandleFunc("GET /v1/names", s.names)
	mux.HandleFunc("POST /v1/confirm", s.confirm)
	mux.HandleFunc("GET /v1/violations", s.violations)
	mux.HandleFunc("POST /v1/sync", s.sync)
	mux.HandleFunc("GET /v1/status", s.status)
	registerLearn(mux, s) // learn.go
	// No WriteTimeout: `violations --follow` streams for as long as the
	// client wants. A slow reader of a response only holds its own
	// connection.
	hs := &http.Server{
		Handler:           s.onlyRoot(mux),
		ConnContext:       withPeer,
		ReadHeaderTimeout: orDefault(opts.HeaderTimeout, 10*time.Second),
		ReadTimeout:       orDefault(opts.BodyTimeout, 60*time.Second),
		IdleTimeout:       orDefault(opts.IdleTimeout, 60*time.Second),
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		hs.Close() // end --follow streams still open
	}()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

type peerKey struct{}

type peer struct {
	uid int
	pid int
	err error
}

func withPeer(ctx context.Context, c net.Conn) context.Context {
	p := peer{uid: -1}
	p.uid, p.pid, p.err = peerCred(c)
	return context.WithValue(ctx, peerKey{}, p)
}

func (s *server) onlyRoot(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if p.err != nil || p.uid != s.allowUID {
			s.log.Warn("refused API caller", "uid", p.uid, "pid", p.pid, "err", p.err, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, client.ErrorBody{Error: "permission denied: only root may control exewall"})
			return
		}
		// Every body is bounded before a handler reads it; reading past
		// the bound fails with *http.MaxBytesError (413).
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var pe *engine.PolicyError
	var me *engine.ManagedError
	var pend *engine.PendingError
	switch {
	case errors.Is(err, errTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, errTooSlow):
		code = http.StatusRequestTimeout
	case errors.As(err, &me), errors.As(err, &pend), errors.Is(err, engine.ErrNoPendingApply), errors.Is(err, engine.ErrLearning),
		errors.Is(err, engine.ErrWouldCut):
		code = http.StatusConflict
	case errors.Is(err, engine.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, engine.ErrNotSupported):
		code = http.StatusNotImplemented
	case errors.As(err, &pe), errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	}
	body := client.ErrorBody{Error: err.Error() + Hint(err)}
	if pe != nil {
		body.Line = pe.Line
	}
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, body)
}

// policy is the policy in force; with ?exe=PATH, only the rule naming
// that executable (the CLI's deny/allow read nothing else).
func (s *server) policy(w http.ResponseWriter, r *http.Request) {
	if exe := r.URL.Query().Get("exe"); exe != "" {
		same := engine.ExeMatcher(exe)
		writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.PolicyWhere(func(rule *engine.Rule) bool {
			return rule.Exe != "" && same(rule.Exe)
		})))
		return
	}
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()))
}

func (s *server) rules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()).Rules)
}

func (s *server) addRule(w http.ResponseWriter, r *http.Request) {
	rule, err := decodeRule(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	got, err := s.m.AddRule(r.Context(), rule, changeOptions(r)...)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("rule set", "rule", got.Name, "action", got.Action.String())
	writeJSON(w, http.StatusOK, engine.ViewRule(got))
}

func (s *server) removeRule(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		s.fail(w, r, fmt.Errorf("%w: no rule named", errBadRequest))
		return
	}
	got, err := s.m.RemoveRule(r.Context(), name, changeOptions(r)...)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("rule removed", "rule", got.Name)
	writeJSON(w, http.StatusOK, engine.ViewRule(got))
}

func (s *server) setDefault(w http.ResponseWriter, r *http.Request) {
	a, inbound, err := decodeAction(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	set, key := s.m.SetDefault, "default"
	if inbound {
		set, key = s.m.SetDefaultInbound, "default_inbound"
	}
	if err := set(r.Context(), a, changeOptions(r)...); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("default set", key, a.String())
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()))
}

func (s *server) setMode(w http.ResponseWriter, r *http.Request) {
	mode, err := decodeMode(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.m.SetMode(r.Context(), mode, changeOptions(r)...); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("mode set", "mode", mode.String())
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()))
}

func (s *server) apply(w http.ResponseWriter, r *http.Request) {
	req, err := decodeApply(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.m.ApplyFile(r.Context(), []byte(req.Policy), req.ConfirmWithin, changeOptions(r)...)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := client.ApplyResponse{Rules: len(p.Rules)}
	if d, ok := s.m.Pending(); ok {
		resp.ConfirmDeadline = &d
	}
	s.log.Info("policy applied", "rules", resp.Rules, "confirm_within", req.ConfirmWithin)
	writeJSON(w, http.StatusOK, resp)
}

// diff validates a policy exactly as apply does and answers what applying
// it would change; nothing changes.
func (s *server) diff(w http.ResponseWriter, r *http.Request) {
	var req client.DiffRequest
	if err := decodeBody(r.Body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	next, cur, err := s.m.Check([]byte(req.Policy))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, engine.Compare(engine.ViewPolicy(cur), engine.ViewPolicy(next)))
}

// names lists the name bindings in force; 501 from a backend that does not
// learn names.
func (s *server) names(w http.ResponseWriter, r *http.Request) {
	bs, err := s.m.Names(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bs)
}

func (s *server) confirm(w http.ResponseWriter, r *http.Request) {
	if err := s.m.Confirm(); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *server) violations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := decodeSince(q.Get("since"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	follow := q.Get("follow") == "1"
	var live <-chan engine.Violation
	if follow {
		// Subscribe before reading the window so nothing falls between.
		ch, cancel := s.m.Subscribe()
		defer cancel()
		live = ch
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var last time.Time
	if !follow || q.Get("since") != "" {
		for _, v := range s.m.Violations(since) {
			if err := enc.Encode(v); err != nil {
				return
			}
			last = v.Time
		}
	}
	if !follow {
		return
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case v, ok := <-live:
			if !ok {
				return // fell behind, or the daemon is stopping
			}
			if !v.Time.After(last) && !last.IsZero() {
				continue // already sent from the window
			}
			if err := enc.Encode(v); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func (s *server) sync(w http.ResponseWriter, r *http.Request) {
	drift, err := s.m.Sync(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, d := range drift {
		s.log.Warn("tamper: kernel state differed from the policy", "what", d.What, "repaired", d.Repaired, "by", "sync command")
	}
	if drift == nil {
		drift = []engine.Drift{}
	}
	writeJSON(w, http.StatusOK, client.SyncResponse{Drift: drift})
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.m.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
