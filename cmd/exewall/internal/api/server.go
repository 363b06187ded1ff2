package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/exewall/exewall/engine"
)

// maxBody bounds a request body (an apply carries a whole policy file).
const maxBody = 16 << 20

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
}

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
	mux.HandleFunc("POST /v1/confirm", s.confirm)
	mux.HandleFunc("GET /v1/violations", s.violations)
	mux.HandleFunc("POST /v1/sync", s.sync)
	mux.HandleFunc("GET /v1/status", s.status)
	hs := &http.Server{
		Handler:           s.onlyRoot(mux),
		ConnContext:       withPeer,
		ReadHeaderTimeout: 10 * time.Second,
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
			writeJSON(w, http.StatusForbidden, Error{Error: "permission denied: only root may control exewall"})
			return
		}
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
	case errors.As(err, &me), errors.As(err, &pend), errors.Is(err, engine.ErrNoPendingApply):
		code = http.StatusConflict
	case errors.Is(err, engine.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, engine.ErrNotSupported):
		code = http.StatusNotImplemented
	case errors.As(err, &pe), errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	}
	body := Error{Error: err.Error()}
	if pe != nil {
		body.Line = pe.Line
	}
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, body)
}

var errBadRequest = errors.New("bad request")

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

func (s *server) policy(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()))
}

func (s *server) rules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()).Rules)
}

func (s *server) addRule(w http.ResponseWriter, r *http.Request) {
	var rv engine.RuleView
	if err := decode(r, &rv); err != nil {
		s.fail(w, r, err)
		return
	}
	// RuleView.Rule checks a name; an empty one is derived by the manager.
	named := rv
	if named.Name == "" {
		named.Name = "unnamed"
	}
	rule, err := named.Rule()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rule.Name = rv.Name
	got, err := s.m.AddRule(r.Context(), rule)
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
	got, err := s.m.RemoveRule(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("rule removed", "rule", got.Name)
	writeJSON(w, http.StatusOK, engine.ViewRule(got))
}

func (s *server) setDefault(w http.ResponseWriter, r *http.Request) {
	var req ActionRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := engine.ParseAction(req.Action)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if err := s.m.SetDefault(r.Context(), a); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("default set", "default", a.String())
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()))
}

func (s *server) setMode(w http.ResponseWriter, r *http.Request) {
	var req ModeRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	mode, err := engine.ParseMode(req.Mode)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if err := s.m.SetMode(r.Context(), mode); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("mode set", "mode", mode.String())
	writeJSON(w, http.StatusOK, engine.ViewPolicy(s.m.Policy()))
}

func (s *server) apply(w http.ResponseWriter, r *http.Request) {
	var req ApplyRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.ConfirmWithin < 0 {
		s.fail(w, r, fmt.Errorf("%w: negative confirm-within", errBadRequest))
		return
	}
	p, err := s.m.ApplyFile(r.Context(), []byte(req.Policy), req.ConfirmWithin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := ApplyResponse{Rules: len(p.Rules)}
	if d, ok := s.m.Pending(); ok {
		resp.ConfirmDeadline = &d
	}
	s.log.Info("policy applied", "rules", resp.Rules, "confirm_within", req.ConfirmWithin)
	writeJSON(w, http.StatusOK, resp)
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
	since := time.Time{}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: since: %v", errBadRequest, err))
			return
		}
		since = t
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
	writeJSON(w, http.StatusOK, SyncResponse{Drift: drift})
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.m.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
