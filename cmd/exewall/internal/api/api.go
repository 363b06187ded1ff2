// Package api is the daemon's HTTP+JSON interface: the server, which wraps
// an engine.Manager. Its client is the public package client.
//
// The transport is per OS. On Linux and macOS it is a Unix socket (mode
// 0600 in a 0700 directory) and the peer's credentials are checked on every
// connection, so only root may talk to the daemon. On Windows it is a named
// pipe whose security descriptor admits only SYSTEM and elevated
// Administrators; Windows has no peer credentials on a local socket, so that
// descriptor is the check (peercred_windows.go).
package api

import (
	"errors"

	"github.com/exewall/exewall/engine"
)

// The request and response bodies are the public client package's
// (client/types.go): the server and every client share one definition.

// Hint is what a user of the CLI can do about err, to follow its message
// ("" when there is nothing to add): the engine's errors say what is wrong,
// the API says how to get on.
func Hint(err error) string {
	var pend *engine.PendingError
	switch {
	case errors.Is(err, engine.ErrLearning):
		return " (`exewall learn`); stop it first (Ctrl-C in its terminal), or wait for it to end"
	case errors.Is(err, engine.ErrEmptyPolicyFile):
		return "; for no rules at all, write `rules: []`; the policy in force is unchanged"
	case errors.As(err, &pend):
		return "; run `exewall confirm` (or let it roll back) first"
	case errors.Is(err, engine.ErrWouldCut):
		return "; the policy in force is unchanged; give --force to cut them"
	}
	return ""
}
