// Command summary reads `go test -json` on stdin, prints each package's
// result as it finishes and the full output of every failed test, and ends
// with one line saying what the run did:
//
//	412 passed, 0 failed, 3 skipped (38 packages)
//
// It exits 1 when a test, a package or a build failed, or when the stream
// held no test at all. `make test` pipes `go test -json ./...` through it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	s := Summarise(os.Stdin, os.Stdout)
	fmt.Println(s.Line())
	if !s.OK() {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	Elapsed    float64
	ImportPath string // build-output, build-fail
}

// Summary counts what a test run did.
type Summary struct {
	Passed, Failed, Skipped int
	Packages                int // packages that ran (or failed to build)
	FailedPackages          []string
	Skips                   []string // "pkg TestX: reason"
}

// OK reports whether the run passed: no failure and at least one test.
func (s Summary) OK() bool {
	return s.Failed == 0 && len(s.FailedPackages) == 0 && s.Passed+s.Skipped > 0
}

// Line is the last line of the summary.
func (s Summary) Line() string {
	l := fmt.Sprintf("%d passed, %d failed, %d skipped (%d packages", s.Passed, s.Failed, s.Skipped, s.Packages)
	if n := len(s.FailedPackages); n > 0 {
		l += fmt.Sprintf(", %d failed", n)
	}
	return l + ")"
}

// Summarise reads the events from r and writes progress to w.
func Summarise(r io.Reader, w io.Writer) Summary {
	var s Summary
	output := map[string][]string{} // "pkg test" -> its output lines
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, sc.Text()) // not an event: go's own message
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			output[key] = append(output[key], e.Output)
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "build-fail":
			s.Packages++
			s.FailedPackages = append(s.FailedPackages, e.ImportPath)
		case "pass", "fail", "skip":
			if e.Test == "" {
				s.pkgDone(w, e, output[key])
				break
			}
			switch e.Action {
			case "pass":
				s.Passed++
			case "fail":
				s.Failed++
				fmt.Fprintf(w, "--- FAIL: %s %s\n", e.Package, e.Test)
				for _, l := range output[key] {
					fmt.Fprint(w, "    "+l)
				}
			case "skip":
				s.Skipped++
				s.Skips = append(s.Skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, skipReason(output[key])))
			}
			delete(output, key)
		}
	}
	for _, sk := range s.Skips {
		fmt.Fprintln(w, "skipped:", sk)
	}
	return s
}

// pkgDone reports a package's end.
func (s *Summary) pkgDone(w io.Writer, e event, out []string) {
	switch e.Action {
	case "pass":
		s.Packages++
		fmt.Fprintf(w, "ok    %s (%.1fs)\n", e.Package, e.Elapsed)
	case "fail":
		s.Packages++
		s.FailedPackages = append(s.FailedPackages, e.Package)
		fmt.Fprintf(w, "FAIL  %s (%.1fs)\n", e.Package, e.Elapsed)
		for _, l := range out { // a panic or a TestMain failure
			fmt.Fprint(w, "    "+l)
		}
	case "skip": // no test files
	}
}

// skipReason is the last line a skipped test logged before "--- SKIP".
func skipReason(out []string) string {
	reason := ""
	for _, l := range out {
		if len(l) > 0 && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
			reason = l
		}
	}
	return strings.TrimSpace(reason)
}
