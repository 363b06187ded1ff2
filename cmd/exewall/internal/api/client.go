package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/exewall/exewall/cmd/exewall/internal/platform"
	"github.com/exewall/exewall/engine"
)

// Client talks to a daemon on its socket (named pipe on Windows).
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return platform.Dial(ctx, socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// RemoteError is an error the daemon answered with.
type RemoteError struct {
	Status int
	Body   Error
}

func (e *RemoteError) Error() string { return e.Body.Error }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read daemon answer: %w", err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://exewall"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e); err != nil || e.Error == "" {
			e.Error = fmt.Sprintf("daemon answered %s", resp.Status)
		}
		return nil, &RemoteError{Status: resp.StatusCode, Body: e}
	}
	return resp, nil
}

// dialError says what a user can do about a daemon that cannot be reached.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no daemon is listening on %s (%s, or pass --socket)", c.socket, platform.StartHint)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("permission denied on %s: only %s may control exewall", c.socket, platform.AllowedCallers)
	}
	return fmt.Errorf("cannot reach the daemon on %s: %w", c.socket, err)
}

// Policy returns the policy in force.
func (c *Client) Policy(ctx context.Context) (engine.PolicyView, error) {
	var v engine.PolicyView
	return v, c.do(ctx, "GET", "/v1/policy", nil, &v)
}

// AddRule adds or replaces a rule and returns it as stored.
func (c *Client) AddRule(ctx context.Context, r engine.RuleView) (engine.RuleView, error) {
	var v engine.RuleView
	return v, c.do(ctx, "POST", "/v1/rules", r, &v)
}

// RemoveRule removes the rule with that name (or for that executable).
func (c *Client) RemoveRule(ctx context.Context, nameOrExe string) (engine.RuleView, error) {
	var v engine.RuleView
	return v, c.do(ctx, "DELETE", "/v1/rules?name="+url.QueryEscape(nameOrExe), nil, &v)
}

// SetDefault sets the verdict for processes no rule selects.
func (c *Client) SetDefault(ctx context.Context, action string) error {
	return c.do(ctx, "PUT", "/v1/default", ActionRequest{Action: action}, nil)
}

// SetMode sets enforce or audit.
func (c *Client) SetMode(ctx context.Context, mode string) error {
	return c.do(ctx, "PUT", "/v1/mode", ModeRequest{Mode: mode}, nil)
}

// Apply replaces the whole policy.
func (c *Client) Apply(ctx context.Context, policy []byte, confirmWithin time.Duration) (ApplyResponse, error) {
	var v ApplyResponse
	return v, c.do(ctx, "POST", "/v1/apply", ApplyRequest{Policy: string(policy), ConfirmWithin: confirmWithin}, &v)
}

// Confirm keeps a policy applied with a confirm-within deadline.
func (c *Client) Confirm(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/confirm", nil, nil)
}

// Sync repairs drift between the kernel and the policy and reports it.
func (c *Client) Sync(ctx context.Context) ([]engine.Drift, error) {
	var v SyncResponse
	return v.Drift, c.do(ctx, "POST", "/v1/sync", nil, &v)
}

// Status reports the daemon's state.
func (c *Client) Status(ctx context.Context) (engine.Status, error) {
	var v engine.Status
	return v, c.do(ctx, "GET", "/v1/status", nil, &v)
}

// Violations calls fn for each violation kept since since (zero: all), and
// with follow for each new one until ctx is done or the daemon ends the
// stream.
func (c *Client) Violations(ctx context.Context, since time.Time, follow bool, fn func(engine.Violation) error) error {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.send(ctx, "GET", "/v1/violations?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var v engine.Violation
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("read violation: %w", err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read violations: %w", err)
	}
	if follow && ctx.Err() == nil {
		return errors.New("the daemon ended the stream (it stopped, or this reader fell too far behind)")
	}
	return nil
}
