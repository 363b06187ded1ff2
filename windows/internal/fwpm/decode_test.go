package fwpm

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unicode/utf16"
	"unsafe"
)

// TestDecodeDrop writes a classify-drop event byte by byte at the C
// offsets (TestLayouts ties them to the SDK) and reads it back.
func TestDecodeDrop(t *testing.T) {
	var evBuf [160 / 8]uint64
	var dropBuf [32 / 8]uint64
	ev := unsafe.Slice((*byte)(unsafe.Pointer(&evBuf[0])), 160)
	drop := unsafe.Slice((*byte)(unsafe.Pointer(&dropBuf[0])), 32)
	le := binary.LittleEndian

	when := time.Date(2026, 12, 1, 2, 3, 4, 500, time.UTC)
	ft := uint64(when.UnixNano()/100 + 116444736000000000)
	le.PutUint64(ev[0:], ft)
	le.PutUint32(ev[8:], netEventFlagIPProtocolSet|netEventFlagRemoteAddrSet|netEventFlagRemotePortSet|netEventFlagLocalAddrSet|netEventFlagAppIDSet|netEventFlagUserIDSet)
	le.PutUint32(ev[12:], ipVersion4)
	ev[16] = 6
	le.PutUint32(ev[20:], 0xc0a80102) // 192.168.1.2, host order
	le.PutUint32(ev[36:], 0xcb007105) // 203.0.113.5
	le.PutUint16(ev[52:], 50000)      // not flagged: ignored
	le.PutUint16(ev[54:], 443)
	app := utf16.Encode([]rune(`\device\harddiskvolume3\windows\system32\curl.exe` + "\x00"))
	appBytes := make([]byte, 2*len(app))
	for i, c := range app {
		le.PutUint16(appBytes[2*i:], c)
	}
	le.PutUint32(ev[64:], uint32(len(appBytes)))
	le.PutUint64(ev[72:], uint64(uintptr(unsafe.Pointer(&appBytes[0]))))
	sid := []byte{1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0}
	le.PutUint64(ev[80:], uint64(uintptr(unsafe.Pointer(&sid[0]))))
	le.PutUint32(ev[144:], NetEventTypeClassifyDrop)
	le.PutUint64(ev[152:], uint64(uintptr(unsafe.Pointer(&dropBuf[0]))))
	le.PutUint64(drop[0:], 0x1234)
	le.PutUint16(drop[8:], 48)
	le.PutUint32(drop[24:], DirectionOutbound)
	le.PutUint32(drop[28:], 1)

	d, ok := DecodeDrop((*NetEvent1)(unsafe.Pointer(&evBuf[0])))
	runtime.KeepAlive(appBytes)
	runtime.KeepAlive(sid)
	runtime.KeepAlive(dropBuf)
	if !ok {
		t.Fatal("not decoded")
	}
	want := Drop{Time: when.Truncate(100), Proto: 6, Local: netip.MustParseAddrPort("192.168.1.2:0"),
		Remote: netip.MustParseAddrPort("203.0.113.5:443"), AppID: `\device\harddiskvolume3\windows\system32\curl.exe`,
		HasUser: true, FilterID: 0x1234, LayerID: 48, Outbound: true, Loopback: true}
	if !d.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", d.Time, want.Time)
	}
	d.Time = want.Time
	if d != want {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}

	le.PutUint32(ev[144:], 1) // another event type
	if _, ok := DecodeDrop((*NetEvent1)(unsafe.Pointer(&evBuf[0]))); ok {
		t.Error("decoded an event that is not a classify drop")
	}
}

func TestEnumTemplate(t *testing.T) {
	p := GUID{Data1: 1}
	l := GUID{Data1: 2}
	tm := EnumTemplate(&p, l)
	if tm.ProviderKey != &p || tm.LayerKey != l || tm.EnumType != FilterEnumOverlapping || tm.ActionMask != ActionMaskAll ||
		tm.NumFilterConditions != 0 || tm.Flags != 0 {
		t.Errorf("%+v: want every filter of the provider at the layer", tm)
	}
}
