package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestEditRulesScanned: a run of CLI-like edits, each made from the scan
// the previous one returned, gives the text an edit that scans afresh
// gives, and a scan equal to scanRules of that text.
func TestEditRulesScanned(t *testing.T) {
	var b strings.Builder
	b.WriteString("# top comment\ndefault: allow\nmode: enforce\nrules:\n")
	for i := range 60 {
		if i%7 == 0 {
			fmt.Fprintf(&b, "\n  # rule %d's head comment\n", i)
		}
		fmt.Fprintf(&b, "  - name: r%02d # inline\n    exe: /usr/bin/b%02d\n    action: deny\n", i, i)
		if i%5 == 0 {
			b.WriteString("    deny:\n      # inner comment\n      - 10.0.0.0/8 port 443 tcp\n")
		}
	}
	b.WriteString("# trailing comment\n")
	src := []byte(b.String())
	old := mustParse(t, string(src))
	var sc *scannedText
	rng := rand.New(rand.NewPCG(1, 2))
	added := 0
	for step := range 200 {
		p := old.Clone()
		switch k := rng.IntN(len(p.Rules)); step % 5 {
		case 0, 1:
			p.Rules[k].Action = []Action{ActionAllow, ActionDeny, ActionLocalOnly}[rng.IntN(3)]
		case 2:
			added++
			p.Rules = append(p.Rules, Rule{Name: fmt.Sprintf("n%03d", added), Selector: Selector{Exe: fmt.Sprintf("/opt/n%03d", added)}, Action: ActionDeny})
		case 3:
			if len(p.Rules) > 10 {
				p.Rules = slices.Delete(p.Rules, k, k+1)
			}
		case 4:
			added++
			p.Rules[k] = Rule{Name: fmt.Sprintf("n%03d", added), Selector: Selector{Exe: fmt.Sprintf("/opt/n%03d", added)}, Action: ActionAllow}
		}
		want, ok := editRulesText(src, old, p)
		if !ok {
			t.Fatalf("step %d: not edited as text", step)
		}
		out, next, ok := editRulesScanned(src, old, p, sc)
		if !ok || !bytes.Equal(out, want) {
			t.Fatalf("step %d: with the kept scan the text is\n%s\nwant\n%s", step, out, want)
		}
		items, indent, ok := scanRules(out, len(p.Rules))
		if !ok || next == nil || indent != next.indent || len(items) != len(next.items) {
			t.Fatalf("step %d: scan returned %+v, scanRules gives %d items", step, next, len(items))
		}
		for i := range items {
			a, b := items[i], next.items[i]
			if a.start != b.start || a.dash != b.dash || a.end != b.end || string(a.name) != string(b.name) {
				t.Fatalf("step %d item %d: scan returned %d/%d/%d %q, scanRules gives %d/%d/%d %q",
					step, i, b.start, b.dash, b.end, b.name, a.start, a.dash, a.end, a.name)
			}
		}
		src, old, sc = out, mustParse(t, string(out)), next
		if !sc.of(src) {
			t.Fatal("the scan returned is not of the text returned")
		}
	}
}
