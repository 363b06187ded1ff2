//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/exewall/exewall/test/kerneltest"
)

// TestReadme runs the transcripts of README.md, docs/cli.md and
// docs/policy.md (their ```console blocks: "$ command" lines, each
// followed by what it prints) and compares what the commands print with
// what the page shows, numbers (pids, times, ports) aside (issue 20, items
// 2, 3, 4, 7). The README is run from a copy of the tracked files, as a
// fresh clone would be: `make demo` builds there and attaches to a scratch
// cgroup of its own. Every other transcript runs against a daemon on a
// scratch cgroup, from a shell inside that cgroup, so its rules judge only
// the transcript's commands.
func TestReadme(t *testing.T) {
	kerneltest.Require(t)
	for _, tool := range []string{"make", "curl", "python3", "bash"} {
		lookPath(t, tool)
	}
	root := repoRoot(t)
	tree, tracked := copyTree(t)

	readme := transcripts(t, filepath.Join(tree, "README.md"))
	var demo, rest []transcript
	for _, tr := range readme {
		if len(tr.steps) > 0 && tr.steps[0].cmd == "make demo" {
			demo = append(demo, tr)
		} else {
			rest = append(rest, tr)
		}
	}
	if len(demo) != 1 {
		t.Fatalf("README.md has %d transcripts of `make demo`, want 1", len(demo))
	}
	// The demo prints the commands it runs ("$ curl ..."): everything
	// after `make demo` is its output.
	d := &demo[0]
	for _, s := range d.steps[1:] {
		d.steps[0].want = append(d.steps[0].want, "$ "+s.cmd)
		d.steps[0].want = append(d.steps[0].want, s.want...)
	}
	d.steps = d.steps[:1]
	t.Run("make demo in a fresh copy", func(t *testing.T) {
		runTranscript(t, demo[0], tree, nil)
		if extra := untracked(t, tree, tracked); len(extra) > 0 {
			t.Errorf("make demo left files in the checkout: %v", extra)
		}
		if left, _ := filepath.Glob("/sys/fs/bpf/exewall-demo-*"); len(left) > 0 {
			t.Errorf("make demo left pins: %v", left)
		}
	})
	t.Run("README rules on a scratch cgroup", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(tree, "bin", "exewall")); err != nil {
			t.Fatalf("the README's exewall (bin/exewall after make demo): %v", err)
		}
		w := newWorld(t)
		w.start()
		for _, tr := range rest {
			runTranscript(t, tr, tree, w)
		}
	})
	for _, page := range []string{"docs/cli.md", "docs/policy.md"} {
		t.Run(page, func(t *testing.T) {
			trs := transcripts(t, filepath.Join(root, page))
			if len(trs) == 0 {
				t.Fatalf("%s has no transcript", page)
			}
			w := newWorld(t)
			w.start()
			dir := t.TempDir()
			for _, tr := range trs {
				runTranscript(t, tr, dir, w)
			}
		})
	}
	t.Run("no page points at DESIGN.md or issue numbers", func(t *testing.T) {
		for _, page := range []string{"README.md", "docs/cli.md", "docs/policy.md", "docs/BENCHMARKS.md"} {
			data, err := os.ReadFile(filepath.Join(root, page))
			if err != nil {
				t.Fatal(err)
			}
			if m := regexp.MustCompile(`DESIGN\.md|issue \d+|sudo go run`).Find(data); m != nil {
				t.Errorf("%s mentions %q, which a user of this repository cannot follow", page, m)
			}
		}
	})
}

// transcript is one ```console block.
type transcript struct {
	where string // file:line
	steps []step
}

type step struct {
	cmd  string
	want []string
}

// transcripts returns the ```console blocks of a Markdown file.
func transcripts(t *testing.T, path string) []transcript {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []transcript
	var cur *transcript
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && line == "```console":
			cur = &transcript{where: fmt.Sprintf("%s:%d", filepath.Base(path), n)}
		case cur == nil:
		case line == "```":
			out = append(out, *cur)
			cur = nil
		case strings.HasPrefix(line, "$ "):
			cur.steps = append(cur.steps, step{cmd: strings.TrimPrefix(line, "$ ")})
		case len(cur.steps) == 0:
			t.Fatalf("%s: output before the first command: %q", cur.where, line)
		default:
			s := &cur.steps[len(cur.steps)-1]
			s.want = append(s.want, line)
		}
	}
	return out
}

const stepMark = "@@exewall-readme-step@@"

// runTranscript runs tr's commands in one bash, in dir, and compares each
// command's output (stdout and stderr) with the transcript. With w, the
// shell first moves into w's scratch cgroup and talks to w's daemon, with
// the tested exewall first on PATH.
func runTranscript(t *testing.T, tr transcript, dir string, w *world) {
	t.Helper()
	var script strings.Builder
	script.WriteString("exec 2>&1\n")
	// A newcomer's shell is not inside make: under `make test` the
	// inherited MAKELEVEL would make make print "Entering directory".
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKELEVEL" && k != "MAKEFLAGS" && k != "MFLAGS" {
			env = append(env, kv)
		}
	}
	if w != nil {
		fmt.Fprintf(&script, "echo $$ > %q/cgroup.procs || exit 99\n", w.cgroup)
		env = append(env, "EXEWALL_SOCKET="+w.socket, "PATH="+filepath.Dir(exewall)+":"+os.Getenv("PATH"))
	}
	for i, s := range tr.steps {
		if strings.HasPrefix(s.cmd, "exewall violations") {
			// Events reach the daemon a moment after the refusal; a
			// reader of the page would not type that fast.
			script.WriteString("for _ in $(seq 50); do [ -n \"$(exewall violations --json 2>/dev/null)\" ] && break; sleep 0.1; done\n")
		}
		fmt.Fprintf(&script, "echo %s%d\n%s\n", stepMark, i, s.cmd)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil && w == nil {
		t.Errorf("%s: %v\n%s", tr.where, err, out.String())
	}
	got := splitSteps(out.String(), len(tr.steps))
	for i, s := range tr.steps {
		if a, b := normalise(s.want), normalise(got[i]); !equal(a, b) {
			t.Errorf("%s: `%s` printed\n%s\nthe page shows\n%s", tr.where, s.cmd, strings.Join(got[i], "\n"), strings.Join(s.want, "\n"))
		}
	}
}

func splitSteps(out string, n int) [][]string {
	got := make([][]string, n)
	at := -1
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, stepMark); ok {
			fmt.Sscan(rest, &at)
			continue
		}
		if at >= 0 && at < n {
			got[at] = append(got[at], line)
		}
	}
	return got
}

var digits = regexp.MustCompile(`[0-9]+`)

// normalise drops blank lines, runs of spaces (table widths) and the
// values of numbers (pids, times, ports, random suffixes).
func normalise(lines []string) []string {
	var out []string
	for _, l := range lines {
		l = strings.Join(strings.Fields(digits.ReplaceAllString(l, "N")), " ")
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// copyTree copies the repository's tracked files, with their changes
// not yet committed, to a new directory: what a fresh clone holds. It
// returns the directory and the set of files copied.
func copyTree(t *testing.T) (string, map[string]bool) {
	t.Helper()
	root := repoRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "exewall")
	tracked := map[string]bool{}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the work tree, not committed yet
		}
		tracked[name] = true
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(src)
			if err := os.Symlink(target, to); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := copyFile(src, to, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst, tracked
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// untracked lists the files in tree that are neither tracked nor under
// bin/ (ignored build output).
func untracked(t *testing.T, tree string, tracked map[string]bool) []string {
	t.Helper()
	var extra []string
	filepath.WalkDir(tree, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tree, path)
		if !tracked[rel] && !strings.HasPrefix(rel, "bin/") {
			extra = append(extra, rel)
		}
		return nil
	})
	return extra
}
