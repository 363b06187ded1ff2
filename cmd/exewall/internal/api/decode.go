package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

// maxBody bounds a request body (an apply carries a whole policy file).
const maxBody = 16 << 20

var (
	errBadRequest = errors.New("bad request")
	// errTooLarge and errTooSlow are bad requests of their own kind, so
	// the answer says what was wrong.
	errTooLarge = fmt.Errorf("%w: request body larger than %d bytes", errBadRequest, maxBody)
	errTooSlow  = fmt.Errorf("%w: request body not received in time", errBadRequest)
)

// decodeBody decodes one JSON value from a request body into v: unknown
// fields, trailing data, an empty or oversized body are refused. The error
// wraps errBadRequest (errTooLarge, errTooSlow where they apply). It is pure:
// no server state is read or changed.
func decodeBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return bodyError(err)
	}
	return fmt.Errorf("%w: more than one JSON value in the body", errBadRequest)
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case errors.As(err, &te) && te.Timeout():
		return errTooSlow
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body, want a JSON object", errBadRequest)
	}
	return fmt.Errorf("%w: %v", errBadRequest, err)
}

// decodeRule reads a POST /v1/rules body. A rule without a name gets one
// from the manager (derived from its selector), so the name is checked
// only when given.
func decodeRule(body io.Reader) (engine.Rule, error) {
	var rv engine.RuleView
	if err := decodeBody(body, &rv); err != nil {
		return engine.Rule{}, err
	}
	named := rv
	if named.Name == "" {
		named.Name = "unnamed"
	}
	rule, err := named.Rule()
	if err != nil {
		return engine.Rule{}, err
	}
	rule.Name = rv.Name
	return rule, nil
}

// decodeAction reads a PUT /v1/default body; inbound says it sets
// default_inbound.
func decodeAction(body io.Reader) (a engine.Action, inbound bool, err error) {
	var req client.ActionRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, false, err
	}
	a, err = engine.ParseAction(req.Action)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return a, req.Inbound, nil
}

// changeOptions reads the force=1 query parameter of a changing request.
func changeOptions(r *http.Request) []engine.ChangeOption {
	if r.URL.Query().Get("force") == "1" {
		return []engine.ChangeOption{engine.Force()}
	}
	return nil
}

// decodeMode reads a PUT /v1/mode body.
func decodeMode(body io.Reader) (engine.Mode, error) {
	var req client.ModeRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, err
	}
	mode, err := engine.ParseMode(req.Mode)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return mode, nil
}

// decodeApply reads a POST /v1/apply body. The policy text itself is
// checked by the manager (it names the line at fault).
func decodeApply(body io.Reader) (client.ApplyRequest, error) {
	var req client.ApplyRequest
	if err := decodeBody(body, &req); err != nil {
		return client.ApplyRequest{}, err
	}
	if req.ConfirmWithin < 0 {
		return client.ApplyRequest{}, fmt.Errorf("%w: negative confirm_within", errBadRequest)
	}
	return req, nil
}

// decodeSince reads the since= query parameter of GET /v1/violations.
func decodeSince(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: since: %v", errBadRequest, err)
	}
	return t, nil
}
