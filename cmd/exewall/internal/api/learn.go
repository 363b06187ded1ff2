package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/exewall/exewall/engine"
)

// LearnRequest starts a learning session (`exewall learn`).
type LearnRequest struct {
	// Duration is how long the session runs; 0: until stopped.
	Duration time.Duration `json:"duration,omitempty"`
	// Lease ends the session when the client has not polled it for this
	// long (it died); 0 means DefaultLearnLease.
	Lease time.Duration `json:"lease,omitempty"`
}

// DefaultLearnLease is how long a learning session outlives a silent client.
const DefaultLearnLease = 30 * time.Second

// registerLearn adds the learning session's endpoints:
// POST /v1/learn starts one, GET /v1/learn reports its progress and renews
// its lease, DELETE /v1/learn ends it and returns what it saw.
func registerLearn(mux *http.ServeMux, s *server) {
	mux.HandleFunc("POST /v1/learn", s.learnStart)
	mux.HandleFunc("GET /v1/learn", s.learnStatus)
	mux.HandleFunc("DELETE /v1/learn", s.learnStop)
}

func (s *server) learnFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, engine.ErrNoLearning):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, engine.ErrLearning):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	default:
		s.fail(w, r, err)
	}
}

func (s *server) learnStart(w http.ResponseWriter, r *http.Request) {
	var req LearnRequest
	if err := decodeBody(r.Body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Duration < 0 || req.Lease < 0 {
		s.fail(w, r, errors.Join(errBadRequest, errors.New("negative duration or lease")))
		return
	}
	if req.Lease == 0 {
		req.Lease = DefaultLearnLease
	}
	rep, err := s.m.StartLearning(r.Context(), req.Duration, req.Lease)
	if err != nil {
		s.learnFail(w, r, err)
		return
	}
	s.log.Info("learning started", "duration", req.Duration, "lease", req.Lease)
	writeJSON(w, http.StatusOK, rep)
}

func (s *server) learnStatus(w http.ResponseWriter, r *http.Request) {
	rep, err := s.m.LearnStatus()
	if err != nil {
		s.learnFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *server) learnStop(w http.ResponseWriter, r *http.Request) {
	rep, err := s.m.StopLearning(r.Context())
	if err != nil {
		s.learnFail(w, r, err)
		return
	}
	s.log.Info("learning stopped", "events", rep.Events, "executables", rep.Exes, "why", rep.EndReason)
	writeJSON(w, http.StatusOK, rep)
}

// StartLearning starts a learning session.
func (c *Client) StartLearning(ctx context.Context, d, lease time.Duration) (engine.LearnReport, error) {
	var v engine.LearnReport
	return v, c.do(ctx, "POST", "/v1/learn", LearnRequest{Duration: d, Lease: lease}, &v)
}

// LearnStatus reports the session's progress and renews its lease.
func (c *Client) LearnStatus(ctx context.Context) (engine.LearnReport, error) {
	var v engine.LearnReport
	return v, c.do(ctx, "GET", "/v1/learn", nil, &v)
}

// StopLearning ends the session and returns everything it saw.
func (c *Client) StopLearning(ctx context.Context) (engine.LearnReport, error) {
	var v engine.LearnReport
	return v, c.do(ctx, "DELETE", "/v1/learn", nil, &v)
}
