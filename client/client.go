// Package client is the Go client of a running exewall daemon: the API the
// exewall command line itself uses, one typed call per command.
//
// The daemon answers HTTP+JSON on a Unix socket (mode 0600, root only) on
// Linux and macOS, and on a named pipe (SYSTEM and elevated Administrators
// only) on Windows; DefaultSocket is where it listens unless told
// otherwise. A Client holds no connection between calls and is safe for
// concurrent use.
//
// Every call returns, on error, one of:
//   - a *DialError when the daemon cannot be reached (errors.Is with
//     ErrNoDaemon when nothing listens there, fs.ErrPermission when the
//     caller may not connect);
//   - an *Error when the daemon refused or failed the request: its Status
//     is the HTTP status (400 invalid, 404 no such rule or session, 409
//     refused in the daemon's current state: managed policy file, pending
//     confirmation, learning session; 501 not supported on this OS or
//     kernel, which errors.Is matches with engine.ErrNotSupported), its
//     Message the daemon's one-line reason;
//   - the context's error when ctx ends first, or an error reading the
//     answer.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/exewall/exewall/engine"
)

// Client talks to one daemon.
type Client struct {
	socket string // for messages
	base   string // URL prefix of the API's paths
	hc     *http.Client
	force  bool // changing calls go through the listener check (Forced)
}

// New returns a client of the daemon listening on socket (a Unix socket
// path, or a named pipe on Windows); "" means DefaultSocket. Nothing is
// dialled until the first call.
func New(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx, socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, base: "http://exewall", hc: &http.Client{Transport: tr}}
}

// NewWithHTTP returns a client that sends its requests through hc to
// baseURL (such as an httptest.Server's URL): for tests and for proxies.
func NewWithHTTP(hc *http.Client, baseURL string) *Client {
	return &Client{socket: baseURL, base: strings.TrimSuffix(baseURL, "/"), hc: hc}
}

// Forced returns a copy of c whose changing calls (AddRule, RemoveRule,
// SetDefault, SetDefaultInbound, SetMode, Apply) are made even when they
// cut sockets listening now (the CLI's --force). Without it such a change
// is refused with an *Error of Status 409 that errors.Is matches with
// engine.ErrWouldCut, naming each program and port.
func (c *Client) Forced() *Client {
	f := *c
	f.force = true
	return &f
}

// Socket is where the client connects.
func (c *Client) Socket() string { return c.socket }

// ErrNoDaemon says that no daemon listens on the socket.
var ErrNoDaemon = errors.New("no daemon is listening")

// DialError is a daemon that could not be reached.
type DialError struct {
	Socket string
	Err    error // ErrNoDaemon, an fs.ErrPermission, or the cause
}

func (e *DialError) Error() string {
	switch {
	case errors.Is(e.Err, ErrNoDaemon):
		return "no daemon is listening on " + e.Socket
	case errors.Is(e.Err, fs.ErrPermission):
		return "permission denied on " + e.Socket
	}
	return fmt.Sprintf("cannot reach the daemon on %s: %v", e.Socket, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// Error is a refusal or failure the daemon answered with.
type Error struct {
	Status  int    // HTTP status
	Message string // the daemon's one-line reason
	Line    int    // the policy line at fault, 0 if none
}

func (e *Error) Error() string { return e.Message }

// Unwrap makes errors.Is(err, engine.ErrNotSupported) true for a 501, and
// errors.Is(err, engine.ErrWouldCut) for a change refused because it
// would cut listening sockets.
func (e *Error) Unwrap() error {
	switch {
	case e.Status == http.StatusNotImplemented:
		return engine.ErrNotSupported
	case e.Status == http.StatusConflict && strings.HasPrefix(e.Message, engine.ErrWouldCut.Error()):
		return engine.ErrWouldCut
	}
	return nil
}

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
		return fmt.Errorf("read the daemon's answer: %w", err)
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
	if c.force && method != http.MethodGet {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "force=1"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.dialError(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e ErrorBody
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e); err != nil || e.Error == "" {
			e.Error = fmt.Sprintf("daemon answered %s", resp.Status)
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error, Line: e.Line}
	}
	return resp, nil
}

func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		err = ErrNoDaemon
	case errors.Is(err, fs.ErrPermission):
		err = fs.ErrPermission
	}
	return &DialError{Socket: c.socket, Err: err}
}
