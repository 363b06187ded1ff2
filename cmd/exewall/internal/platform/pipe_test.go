package platform

import (
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestPipeSDDL checks the pipe's descriptor by reading its SDDL: a protected
// DACL whose only entries allow SYSTEM and Administrators, no owner or group
// override, no SACL, nothing for Everyone, Users, Authenticated Users,
// interactive or network logons.
func TestPipeSDDL(t *testing.T) {
	if !strings.HasPrefix(pipeSDDL, "D:P(") {
		t.Fatalf("%q: want a protected DACL and nothing before it", pipeSDDL)
	}
	if strings.Contains(pipeSDDL, "S:") || strings.Contains(pipeSDDL, "O:") || strings.Contains(pipeSDDL, "G:") {
		t.Fatalf("%q: unexpected owner, group or SACL", pipeSDDL)
	}
	ace := regexp.MustCompile(`\(([^;()]*);([^;()]*);([^;()]*);([^;()]*);([^;()]*);([^;()]*)\)`)
	rest := strings.TrimPrefix(pipeSDDL, "D:P")
	if ace.ReplaceAllString(rest, "") != "" {
		t.Fatalf("%q: stray text between ACEs", pipeSDDL)
	}
	var trustees []string
	for _, m := range ace.FindAllStringSubmatch(rest, -1) {
		typ, flags, rights, trustee := m[1], m[2], m[3], m[6]
		if typ != "A" || flags != "" || m[4] != "" || m[5] != "" {
			t.Errorf("ACE %s: want a plain, non-inherited allow", m[0])
		}
		if rights != "GA" {
			t.Errorf("ACE %s: rights %q, want GA", m[0], rights)
		}
		trustees = append(trustees, trustee)
	}
	sort.Strings(trustees)
	if strings.Join(trustees, ",") != "BA,SY" {
		t.Errorf("trustees %v, want exactly Administrators (BA) and SYSTEM (SY)", trustees)
	}
	if defaultPipeName != `\\.\pipe\exewall` {
		t.Errorf("defaultPipeName = %q", defaultPipeName)
	}
}

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
	if !validPipeName(defaultPipeName) || validPipeName(`C:\x`) {
		t.Error("validPipeName")
	}
}

// The Windows service must start after the Base Filtering Engine.
func TestServiceDependsOnBFE(t *testing.T) {
	if len(serviceDependencies) != 1 || serviceDependencies[0] != "BFE" {
		t.Errorf("serviceDependencies = %q, want [BFE]", serviceDependencies)
	}
}
