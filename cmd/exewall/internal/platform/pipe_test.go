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
}

// The Windows service must start after the Base Filtering Engine.
func TestServiceDependsOnBFE(t *testing.T) {
	if len(serviceDependencies) != 1 || serviceDependencies[0] != "BFE" {
		t.Errorf("serviceDependencies = %q, want [BFE]", serviceDependencies)
	}
}
