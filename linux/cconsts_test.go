//go:build linux

package linux

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestCConstantsMatchGo ties the limits and enum values of bpf/exewall.h to
// their Go copies: a change on one side only fails here, not in the kernel.
// (Struct layouts need no such test: bpf2go generates them, -type in gen.go.)
func TestCConstantsMatchGo(t *testing.T) {
	c := cConstants(t, "../bpf/exewall.h")
	for name, want := range map[string]uint64{
		"MAX_RULES": maxRules, "MAX_DEST_ENTRIES": maxDestEntries, "MAX_PREFIX_LENS": maxPrefixLens,
		"GEN_BIT": genBit, "MAX_NAME": maxName, "EVENT_WINDOW_NS": eventWindow,
		"MEMO_CPUS": memoCPUs, "MEMO_WAYS": memoWays, "MEMO_TAG_BASE": memoTagBase,
		"VERDICT_ALLOW": verdictAllow, "VERDICT_DENY": verdictDeny, "VERDICT_AUDIT": verdictAudit,
		"ACTION_ALLOW": uint64(engine.ActionAllow), "ACTION_DENY": uint64(engine.ActionDeny), "ACTION_LOCAL_ONLY": uint64(engine.ActionLocalOnly),
		"PROTO_ANY": uint64(engine.ProtoAny), "PROTO_TCP": uint64(engine.ProtoTCP), "PROTO_UDP": uint64(engine.ProtoUDP),
	} {
		got, ok := c[name]
		if !ok {
			t.Errorf("%s is not defined in bpf/exewall.h", name)
		} else if got != want {
			t.Errorf("%s is %d in bpf/exewall.h, %d in Go", name, got, want)
		}
	}
	for name, word := range map[string]string{"PROTO_TCP": "tcp", "PROTO_UDP": "udp", "PROTO_ICMP": "icmp", "PROTO_RAW": "raw"} {
		if v := c[name]; int(v) >= len(protoNames) || protoNames[v] != word {
			t.Errorf("event proto %s (%d) is not named %q", name, v, word)
		}
	}
	// Array bounds of the generated structs are the same limits.
	for _, b := range []struct {
		what     string
		got, max int
	}{
		{"dest_val entries", len(datapathDestVal{}.E), maxDestEntries},
		{"rule prefix lengths", len(datapathRule{}.Lens4), maxPrefixLens},
		{"path_key name", len(datapathPathKey{}.Name), maxName},
	} {
		if b.got != b.max {
			t.Errorf("%s: %d in the generated struct, %d in Go", b.what, b.got, b.max)
		}
	}
}

var (
	cDefine = regexp.MustCompile(`(?m)^#define\s+([A-Z_0-9]+)\s+(.+?)\s*(?:/\*.*)?$`)
	cEnum   = regexp.MustCompile(`enum\s+\w+\s*\{([^}]*)\}`)
)

// cConstants reads the #defines and enum values of a C header whose values
// are plain numbers, (1 << N) or (1u << N).
func cConstants(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, m := range cDefine.FindAllStringSubmatch(string(data), -1) {
		if v, ok := cValue(m[2]); ok {
			out[m[1]] = v
		}
	}
	for _, m := range cEnum.FindAllStringSubmatch(string(data), -1) {
		next := uint64(0)
		for _, item := range strings.Split(m[1], ",") {
			name, val, hasVal := strings.Cut(strings.TrimSpace(item), "=")
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			if hasVal {
				next, _ = cValue(val)
			}
			out[name] = next
			next++
		}
	}
	return out
}

func cValue(s string) (uint64, bool) {
	s = strings.Trim(strings.TrimSpace(s), "()")
	if l, r, ok := strings.Cut(s, "<<"); ok {
		a, okA := cValue(l)
		b, okB := cValue(r)
		return a << b, okA && okB
	}
	s = strings.TrimRight(strings.TrimSpace(s), "uUlL")
	v, err := strconv.ParseUint(s, 0, 64)
	return v, err == nil
}
