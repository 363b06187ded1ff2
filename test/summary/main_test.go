package main

import (
	"strings"
	"testing"
)

// A run as `go test -json` reports it: one pass, one skip, one failure,
// a package without tests and a package that does not build.
const run = `{"Action":"start","Package":"a"}
{"Action":"run","Package":"a","Test":"TestOK"}
{"Action":"output","Package":"a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"a","Test":"TestOK","Elapsed":0}
{"Action":"run","Package":"a","Test":"TestRoot"}
{"Action":"output","Package":"a","Test":"TestRoot","Output":"    x_test.go:9: needs root\n"}
{"Action":"output","Package":"a","Test":"TestRoot","Output":"--- SKIP: TestRoot (0.00s)\n"}
{"Action":"skip","Package":"a","Test":"TestRoot","Elapsed":0}
{"Action":"run","Package":"a","Test":"TestBad"}
{"Action":"output","Package":"a","Test":"TestBad","Output":"    x_test.go:12: got 1, want 2\n"}
{"Action":"fail","Package":"a","Test":"TestBad","Elapsed":0}
{"Action":"fail","Package":"a","Elapsed":0.5}
{"Action":"skip","Package":"b","Elapsed":0}
{"ImportPath":"c","Action":"build-output","Output":"c/c.go:3:1: syntax error\n"}
{"ImportPath":"c","Action":"build-fail"}
FAIL	c [build failed]
`

func TestSummarise(t *testing.T) {
	var out strings.Builder
	s := Summarise(strings.NewReader(run), &out)
	if got, want := s.Line(), "1 passed, 1 failed, 1 skipped (2 packages, 2 failed)"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if s.OK() {
		t.Error("a run with failures is OK")
	}
	for _, want := range []string{"--- FAIL: a TestBad", "got 1, want 2", "FAIL  a (0.5s)", "syntax error",
		"FAIL\tc [build failed]", "skipped: a TestRoot: x_test.go:9: needs root"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSummariseEmptyRunFails(t *testing.T) {
	var out strings.Builder
	if s := Summarise(strings.NewReader(""), &out); s.OK() {
		t.Error("a run without tests is OK")
	}
}
