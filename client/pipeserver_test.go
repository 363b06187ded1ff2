package client

import "testing"

// TestCheckServer: the CLI talks to the service (LocalSystem) or to an
// elevated daemon, never to a pipe served by an unelevated process of the
// caller's own account, whatever the pipe's owner.
func TestCheckServer(t *testing.T) {
	for _, tc := range []struct {
		s  pipeServer
		ok bool
	}{
		{pipeServer{PID: 4000, User: "S-1-5-18"}, true},
		{pipeServer{PID: 4001, User: "S-1-5-21-1-2-3-1001", Elevated: true}, true},
		{pipeServer{PID: 4002, User: "S-1-5-21-1-2-3-1001"}, false}, // the caller's own account, unelevated
		{pipeServer{PID: 4003, User: "S-1-5-19"}, false},            // LocalService is not exewall
		{pipeServer{PID: 4004, User: "S-1-5-20"}, false},
	} {
		if err := checkServer(tc.s); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.s, err)
		}
	}
	if !validPipeName(`\\.\pipe\exewall`) || validPipeName(`C:\x`) {
		t.Error("validPipeName")
	}
}
