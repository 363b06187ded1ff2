package api

import (
	"errors"
	"net/http"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

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
		writeJSON(w, http.StatusNotFound, client.ErrorBody{Error: err.Error() + Hint(err)})
	case errors.Is(err, engine.ErrLearning):
		writeJSON(w, http.StatusConflict, client.ErrorBody{Error: err.Error() + Hint(err)})
	default:
		s.fail(w, r, err)
	}
}

func (s *server) learnStart(w http.ResponseWriter, r *http.Request) {
	var req client.LearnRequest
	if err := decodeBody(r.Body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Duration < 0 || req.Lease < 0 {
		s.fail(w, r, errors.Join(errBadRequest, errors.New("negative duration or lease")))
		return
	}
	if req.Lease == 0 {
		req.Lease = client.DefaultLearnLease
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
