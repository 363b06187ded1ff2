package fwpm

import (
	"bytes"
	"fmt"
	"go/build"
	"go/importer"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A layout check ties a Go struct to its C original: each Go field (by
// name) to the C member at the same place.
type layout struct {
	pkg, goType, cType string
	fields             [][2]string // Go field, C member
	// broken lists Go fields known to sit at the wrong offset, with the
	// reason exewall does not depend on them. The test fails when one of
	// them becomes right, so the entry is removed with the upgrade that
	// fixed it.
	broken map[string]string
}

const (
	self = "github.com/exewall/exewall/windows/internal/fwpm"
	wf   = "github.com/tailscale/wf"
)

// layouts lists every WFP structure exewall reads or writes, its own
// (types.go) and those of the github.com/tailscale/wf calls it makes
// (session, provider, sublayer, layer and filter creation, app IDs).
var layouts = []layout{
	{pkg: self, goType: "DisplayData0", cType: "FWPM_DISPLAY_DATA0", fields: pairs("Name name", "Description description")},
	{pkg: self, goType: "ByteBlob", cType: "FWP_BYTE_BLOB", fields: pairs("Size size", "Data data")},
	{pkg: self, goType: "Value0", cType: "FWP_VALUE0", fields: pairs("Type type", "Value uint64")},
	{pkg: self, goType: "Action0", cType: "FWPM_ACTION0", fields: pairs("Type type", "CalloutKey calloutKey")},
	{pkg: self, goType: "Filter0", cType: "FWPM_FILTER0", fields: pairs("FilterKey filterKey", "DisplayData displayData",
		"Flags flags", "ProviderKey providerKey", "ProviderData providerData", "LayerKey layerKey", "SubLayerKey subLayerKey",
		"Weight weight", "NumFilterConditions numFilterConditions", "FilterCondition filterCondition", "Action action",
		"ProviderContext providerContextKey", "Reserved reserved", "FilterID filterId", "EffectiveWeight effectiveWeight")},
	{pkg: self, goType: "FilterEnumTemplate0", cType: "FWPM_FILTER_ENUM_TEMPLATE0", fields: pairs("ProviderKey providerKey",
		"LayerKey layerKey", "EnumType enumType", "Flags flags", "ProviderContextTemplate providerContextTemplate",
		"NumFilterConditions numFilterConditions", "FilterCondition filterCondition", "ActionMask actionMask", "CalloutKey calloutKey")},
	{pkg: self, goType: "Filetime", cType: "FILETIME", fields: pairs("LowDateTime dwLowDateTime", "HighDateTime dwHighDateTime")},
	{pkg: self, goType: "NetEventHeader1", cType: "FWPM_NET_EVENT_HEADER1", fields: pairs("TimeStamp timeStamp", "Flags flags",
		"IPVersion ipVersion", "IPProtocol ipProtocol", "LocalAddr localAddrV6", "RemoteAddr remoteAddrV6", "LocalPort localPort",
		"RemotePort remotePort", "ScopeID scopeId", "AppID appId", "UserID userId")},
	{pkg: self, goType: "NetEventClassifyDrop1", cType: "FWPM_NET_EVENT_CLASSIFY_DROP1", fields: pairs("FilterID filterId",
		"LayerID layerId", "ReauthReason reauthReason", "OriginalProfile originalProfile", "CurrentProfile currentProfile",
		"MsFwpDirection msFwpDirection", "IsLoopback isLoopback")},
	{pkg: self, goType: "NetEvent1", cType: "FWPM_NET_EVENT1", fields: pairs("Header header", "Type type", "Drop classifyDrop")},
	{pkg: self, goType: "NetEventEnumTemplate0", cType: "FWPM_NET_EVENT_ENUM_TEMPLATE0", fields: pairs("StartTime startTime",
		"EndTime endTime", "NumFilterConditions numFilterConditions", "FilterCondition filterCondition")},
	{pkg: self, goType: "NetEventSubscription0", cType: "FWPM_NET_EVENT_SUBSCRIPTION0", fields: pairs("EnumTemplate enumTemplate",
		"Flags flags", "SessionKey sessionKey")},

	{pkg: wf, goType: "fwpmDisplayData0", cType: "FWPM_DISPLAY_DATA0", fields: pairs("Name name", "Description description")},
	{pkg: wf, goType: "fwpmSession0", cType: "FWPM_SESSION0", fields: pairs("SessionKey sessionKey", "DisplayData displayData",
		"Flags flags", "TxnWaitTimeoutMillis txnWaitTimeoutInMSec", "ProcessID processId", "SID sid", "Username username",
		"KernelMode kernelMode")},
	{pkg: wf, goType: "fwpmLayer0", cType: "FWPM_LAYER0", fields: pairs("LayerKey layerKey", "DisplayData displayData", "Flags flags",
		"NumFields numFields", "Fields field", "DefaultSublayerKey defaultSubLayerKey", "LayerID layerId")},
	{pkg: wf, goType: "fwpmField0", cType: "FWPM_FIELD0", fields: pairs("FieldKey fieldKey", "Type type", "DataType dataType")},
	{pkg: wf, goType: "fwpmSublayerEnumTemplate0", cType: "FWPM_SUBLAYER_ENUM_TEMPLATE0", fields: pairs("ProviderKey providerKey")},
	{pkg: wf, goType: "fwpByteBlob", cType: "FWP_BYTE_BLOB", fields: pairs("Size size", "Data data")},
	{pkg: wf, goType: "fwpmSublayer0", cType: "FWPM_SUBLAYER0", fields: pairs("SublayerKey subLayerKey", "DisplayData displayData",
		"Flags flags", "ProviderKey providerKey", "ProviderData providerData", "Weight weight")},
	{pkg: wf, goType: "fwpmProvider0", cType: "FWPM_PROVIDER0", fields: pairs("ProviderKey providerKey", "DisplayData displayData",
		"Flags flags", "ProviderData providerData", "ServiceName serviceName")},
	{pkg: wf, goType: "fwpValue0", cType: "FWP_VALUE0", fields: pairs("Type type", "Value uint64")},
	{pkg: wf, goType: "fwpmAction0", cType: "FWPM_ACTION0", fields: pairs("Type type", "GUID filterType")},
	{pkg: wf, goType: "fwpmFilter0", cType: "FWPM_FILTER0", fields: pairs("FilterKey filterKey", "DisplayData displayData",
		"Flags flags", "ProviderKey providerKey", "ProviderData providerData", "LayerKey layerKey", "SublayerKey subLayerKey",
		"Weight weight", "NumFilterConditions numFilterConditions", "FilterConditions filterCondition", "Action action",
		"RawContext rawContext", "ProviderContextKey providerContextKey", "Reserved reserved", "FilterID filterId",
		"EffectiveWeight effectiveWeight"),
		broken: map[string]string{
			// tailscale/wf#22: rawContext and providerContextKey are a union in C.
			"ProviderContextKey": "wf writes it zero and exewall sets no provider context",
			"Reserved":           "must be NULL; wf's zero ProviderContextKey lands on it",
			"FilterID":           "output only; exewall reads filter ids through fwpm.Filters (Filter0.FilterID), never wf's Rule.KernelID",
			"EffectiveWeight":    "output only; never read",
			"":                   "the size: FwpmFilterAdd0 reads no further than C's size",
		}},
	{pkg: wf, goType: "fwpConditionValue0", cType: "FWP_CONDITION_VALUE0", fields: pairs("Type type", "Value uint64")},
	{pkg: wf, goType: "fwpmFilterCondition0", cType: "FWPM_FILTER_CONDITION0", fields: pairs("FieldKey fieldKey",
		"MatchType matchType", "Value conditionValue")},
	{pkg: wf, goType: "fwpV4AddrAndMask", cType: "FWP_V4_ADDR_AND_MASK", fields: pairs("Addr addr", "Mask mask")},
	{pkg: wf, goType: "fwpV6AddrAndMask", cType: "FWP_V6_ADDR_AND_MASK", fields: pairs("Addr addr", "PrefixLength prefixLength")},
	{pkg: wf, goType: "fwpRange0", cType: "FWP_RANGE0", fields: pairs("From valueLow", "To valueHigh")},
}

func pairs(ss ...string) [][2]string {
	out := make([][2]string, len(ss))
	for i, s := range ss {
		g, c, _ := strings.Cut(s, " ")
		out[i] = [2]string{g, c}
	}
	return out
}

// TestLayouts compares, for 64-bit Windows, the offset of every field and
// the size of every structure in layouts as Go lays them out (go/types
// with the gc compiler's amd64 sizes, reading the packages' sources for
// GOOS=windows) with what mingw-w64's x86_64 compiler makes of the SDK
// headers. Nothing runs on Windows: the C side is compiled to assembly and
// the constants read from it.
func TestLayouts(t *testing.T) {
	gcc := "x86_64-w64-mingw32-gcc"
	if _, err := exec.LookPath(gcc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (apt-get install mingw-w64; .ci/deps installs it)", gcc)
		}
		t.Skipf("%s not found: apt-get install mingw-w64", gcc)
	}
	c := cLayouts(t, gcc)
	goL := goLayouts(t)
	for _, l := range layouts {
		name := l.pkg[strings.LastIndex(l.pkg, "/")+1:] + "." + l.goType
		g := goL[l.pkg+"."+l.goType]
		check := func(field string, got, want int64, what string) {
			reason, known := l.broken[field]
			switch {
			case got == want && known:
				t.Errorf("%s %s: now agrees with C (%d); drop it from the broken list (%s)", name, what, got, reason)
			case got != want && !known:
				t.Errorf("%s %s: Go %d, C %s %d", name, what, got, l.cType, want)
			}
		}
		check("", g.size, c[key("size", l.cType, "")], "size")
		for _, f := range l.fields {
			off, ok := g.offsets[f[0]]
			if !ok {
				t.Errorf("%s has no field %s", name, f[0])
				continue
			}
			check(f[0], off, c[key("off", l.cType, f[1])], "."+f[0]+" offset")
		}
		if len(l.fields) != g.named && l.pkg == self {
			t.Errorf("%s has %d named fields, %d checked", name, g.named, len(l.fields))
		}
	}
}

func key(kind, cType, member string) string { return kind + "__" + cType + "__" + member }

func cLayouts(t *testing.T, gcc string) map[string]int64 {
	var src bytes.Buffer
	src.WriteString("#include <stddef.h>\n#include <winsock2.h>\n#include <windows.h>\n#include <fwpmu.h>\n")
	seen := map[string]bool{}
	for _, l := range layouts {
		if k := key("size", l.cType, ""); !seen[k] {
			seen[k] = true
			fmt.Fprintf(&src, "const unsigned long long %s = sizeof(%s);\n", k, l.cType)
		}
		for _, f := range l.fields {
			if k := key("off", l.cType, f[1]); !seen[k] {
				seen[k] = true
				fmt.Fprintf(&src, "const unsigned long long %s = offsetof(%s, %s);\n", k, l.cType, f[1])
			}
		}
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "layouts.c")
	if err := os.WriteFile(in, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(gcc, "-S", "-o", "-", in).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", gcc, err, out)
	}
	// A zero is emitted as ".space 8".
	re := regexp.MustCompile(`(?m)^((?:size|off)__\w+):\s*\n\s*\.(?:quad\s+(\d+)|space\s+8)`)
	m := map[string]int64{}
	for _, s := range re.FindAllSubmatch(out, -1) {
		var n int64
		if len(s[2]) > 0 {
			n, _ = strconv.ParseInt(string(s[2]), 10, 64)
		}
		m[string(s[1])] = n
	}
	if len(m) != len(seen) {
		t.Fatalf("read %d constants from the assembly, want %d", len(m), len(seen))
	}
	return m
}

type goLayout struct {
	size    int64
	offsets map[string]int64
	named   int
}

func goLayouts(t *testing.T) map[string]goLayout {
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = "windows", "amd64", false
	saved := build.Default
	build.Default = ctx // the source importer reads build.Default
	defer func() { build.Default = saved }()
	imp := importer.ForCompiler(token.NewFileSet(), "source", nil)
	sizes := types.SizesFor("gc", "amd64")
	out := map[string]goLayout{}
	for _, l := range layouts {
		pkg, err := imp.Import(l.pkg)
		if err != nil {
			t.Fatalf("import %s for windows/amd64: %v", l.pkg, err)
		}
		obj := pkg.Scope().Lookup(l.goType)
		if obj == nil {
			t.Fatalf("%s has no type %s", l.pkg, l.goType)
		}
		st, ok := obj.Type().Underlying().(*types.Struct)
		if !ok {
			t.Fatalf("%s.%s is not a struct", l.pkg, l.goType)
		}
		vars := make([]*types.Var, st.NumFields())
		for i := range vars {
			vars[i] = st.Field(i)
		}
		g := goLayout{size: sizes.Sizeof(st), offsets: map[string]int64{}}
		for i, off := range sizes.Offsetsof(vars) {
			if n := vars[i].Name(); n != "_" {
				g.offsets[n] = off
				g.named++
			}
		}
		out[l.pkg+"."+l.goType] = g
	}
	return out
}
