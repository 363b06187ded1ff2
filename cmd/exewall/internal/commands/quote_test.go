package commands

import "testing"

func TestQMakesTerminalOutputInert(t *testing.T) {
	cases := map[string]string{
		"curl":             "curl",
		"/usr/bin/my app":  "/usr/bin/my app",
		"caf\u00e9":        "caf\u00e9",
		"x\x1b[2K\rforged": `x\x1b[2K\rforged`,
		"two\nlines":       `two\nlines`,
		"tab\there":        `tab\there`,
		"bidi\u202eevil":   `bidi\u202eevil`,
		"back\\slash":      `back\\slash`,
		"bad\xffutf8":      `bad\xffutf8`,
		`say "hi"`:         `say "hi"`,
		"\x00nul":          `\x00nul`,
		"zero\u200bwidth":  `zero\u200bwidth`,
		"bell\a":           `bell\a`,
		"del\x7f":          `del\x7f`,
		"c1\u009bcsi":      `c1\u009bcsi`,
	}
	for in, want := range cases {
		if got := Q(in); got != want {
			t.Errorf("Q(%q) = %q, want %q", in, got, want)
		}
		for _, r := range Q(in) {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Errorf("Q(%q) still holds control character %U", in, r)
			}
		}
	}
}
