package fwpm

import (
	"net/netip"
	"time"
	"unicode/utf16"
	"unsafe"
)

// The structures below mirror the Windows SDK's fwptypes.h and
// fwpmtypes.h for 64-bit Windows (amd64 and arm64 lay them out alike).
// Only the fields exewall reads or writes have names; a union is an array
// of its largest member's alignment. layout_test.go checks every offset
// and size against the C compiler.

// GUID has the layout of a Windows GUID; it converts to and from
// golang.org/x/sys/windows.GUID.
type GUID struct {
	Data1 uint32
	Data2 uint16
	Data3 uint16
	Data4 [8]byte
}

// DisplayData0 is FWPM_DISPLAY_DATA0.
type DisplayData0 struct {
	Name        *uint16
	Description *uint16
}

// ByteBlob is FWP_BYTE_BLOB.
type ByteBlob struct {
	Size uint32
	Data *byte
}

// Value0 is FWP_VALUE0: a type and a union of a number or a pointer.
type Value0 struct {
	Type  uint32
	Value uintptr
}

// Action0 is FWPM_ACTION0: the action type and the union of a filter
// type or callout key (a GUID).
type Action0 struct {
	Type       uint32
	CalloutKey GUID
}

// Filter0 is FWPM_FILTER0.
type Filter0 struct {
	FilterKey           GUID
	DisplayData         DisplayData0
	Flags               uint32
	ProviderKey         *GUID
	ProviderData        ByteBlob
	LayerKey            GUID
	SubLayerKey         GUID
	Weight              Value0
	NumFilterConditions uint32
	FilterCondition     uintptr // *FWPM_FILTER_CONDITION0
	Action              Action0
	// The union of UINT64 rawContext and GUID providerContextKey: 16
	// bytes aligned on 8. tailscale/wf declares the two one after the
	// other, which moves filterId 8 bytes too far.
	ProviderContext [2]uint64
	Reserved        *GUID
	FilterID        uint64
	EffectiveWeight Value0
}

// FilterEnumTemplate0 is FWPM_FILTER_ENUM_TEMPLATE0.
type FilterEnumTemplate0 struct {
	ProviderKey             *GUID
	LayerKey                GUID
	EnumType                uint32
	Flags                   uint32
	ProviderContextTemplate uintptr
	NumFilterConditions     uint32
	FilterCondition         uintptr
	ActionMask              uint32
	CalloutKey              *GUID
}

// Filetime is FILETIME: 100-ns intervals since 1601-01-01 UTC.
type Filetime struct {
	LowDateTime  uint32
	HighDateTime uint32
}

// Time converts a FILETIME to a time.Time.
func (f Filetime) Time() time.Time {
	const epochDiff = 116444736000000000 // 1601 to 1970 in 100 ns
	n := int64(f.HighDateTime)<<32 | int64(f.LowDateTime)
	return time.Unix(0, (n-epochDiff)*100)
}

// NetEventHeader1 is FWPM_NET_EVENT_HEADER1.
type NetEventHeader1 struct {
	TimeStamp  Filetime
	Flags      uint32
	IPVersion  uint32
	IPProtocol uint8
	_          [3]byte
	LocalAddr  [16]byte // union: localAddrV4 (UINT32, host order) or localAddrV6
	RemoteAddr [16]byte
	LocalPort  uint16
	RemotePort uint16
	ScopeID    uint32
	AppID      ByteBlob
	UserID     unsafe.Pointer // *SID
	_          [7]uint64      // the union of the Ethernet fields
}

// NetEventClassifyDrop1 is FWPM_NET_EVENT_CLASSIFY_DROP1.
type NetEventClassifyDrop1 struct {
	FilterID        uint64
	LayerID         uint16
	ReauthReason    uint32
	OriginalProfile uint32
	CurrentProfile  uint32
	MsFwpDirection  uint32
	IsLoopback      int32
}

// NetEvent1 is FWPM_NET_EVENT1. Its last member is a union of pointers to
// the per-type details; Drop is the one for NetEventTypeClassifyDrop.
type NetEvent1 struct {
	Header NetEventHeader1
	Type   uint32
	Drop   *NetEventClassifyDrop1
}

// NetEventEnumTemplate0 is FWPM_NET_EVENT_ENUM_TEMPLATE0.
type NetEventEnumTemplate0 struct {
	StartTime           Filetime
	EndTime             Filetime
	NumFilterConditions uint32
	FilterCondition     uintptr
}

// NetEventSubscription0 is FWPM_NET_EVENT_SUBSCRIPTION0.
type NetEventSubscription0 struct {
	EnumTemplate *NetEventEnumTemplate0
	Flags        uint32
	SessionKey   GUID
}

// Constants of fwptypes.h and fwpmtypes.h.
const (
	NetEventTypeClassifyDrop = 3 // FWPM_NET_EVENT_TYPE_CLASSIFY_DROP

	netEventFlagIPProtocolSet = 0x1  // FWPM_NET_EVENT_FLAG_IP_PROTOCOL_SET
	netEventFlagLocalAddrSet  = 0x2  // FWPM_NET_EVENT_FLAG_LOCAL_ADDR_SET
	netEventFlagRemoteAddrSet = 0x4  // FWPM_NET_EVENT_FLAG_REMOTE_ADDR_SET
	netEventFlagLocalPortSet  = 0x8  // FWPM_NET_EVENT_FLAG_LOCAL_PORT_SET
	netEventFlagRemotePortSet = 0x10 // FWPM_NET_EVENT_FLAG_REMOTE_PORT_SET
	netEventFlagAppIDSet      = 0x20 // FWPM_NET_EVENT_FLAG_APP_ID_SET
	netEventFlagUserIDSet     = 0x40 // FWPM_NET_EVENT_FLAG_USER_ID_SET

	ipVersion4 = 0 // FWP_IP_VERSION_V4
	ipVersion6 = 1 // FWP_IP_VERSION_V6

	FilterEnumOverlapping = 1          // FWP_FILTER_ENUM_OVERLAPPING
	ActionMaskAll         = 0xffffffff // every action type

	EngineCollectNetEvents = 0 // FWPM_ENGINE_COLLECT_NET_EVENTS
	TypeUint32             = 3 // FWP_UINT32

	DirectionOutbound = 0x3003 // FWP_DIRECTION_OUTBOUND, as MsFwpDirection reports it
	DirectionInbound  = 0x3004 // FWP_DIRECTION_INBOUND
)

// FilterInfo is what exewall reads of one of its filters.
type FilterInfo struct {
	Key          GUID
	Name         string
	Layer        GUID
	Sublayer     GUID
	Provider     GUID // zero when the filter names no provider
	ProviderData []byte
	ID           uint64 // run-time id, as drop events report it
}

// Info copies what exewall needs out of a filter the engine returned.
func (f *Filter0) Info() FilterInfo {
	fi := FilterInfo{
		Key:          f.FilterKey,
		Name:         utf16PtrToString(f.DisplayData.Name),
		Layer:        f.LayerKey,
		Sublayer:     f.SubLayerKey,
		ProviderData: blobBytes(f.ProviderData),
		ID:           f.FilterID,
	}
	if f.ProviderKey != nil {
		fi.Provider = *f.ProviderKey
	}
	return fi
}

// Drop is one classify-drop net event.
type Drop struct {
	Time     time.Time
	Proto    uint8
	Local    netip.AddrPort
	Remote   netip.AddrPort
	AppID    string // NT device path of the executable, as WFP wrote it
	HasUser  bool   // the event carries the user's SID (UserSID is set by the caller)
	FilterID uint64 // run-time id of the filter that dropped it
	LayerID  uint16
	Outbound bool
	Loopback bool
}

// DecodeDrop reads a classify-drop event; ok is false for other types.
func DecodeDrop(ev *NetEvent1) (d Drop, ok bool) {
	if ev == nil || ev.Type != NetEventTypeClassifyDrop || ev.Drop == nil {
		return d, false
	}
	h := &ev.Header
	cd := ev.Drop
	d = Drop{
		Time:     h.TimeStamp.Time(),
		FilterID: cd.FilterID,
		LayerID:  cd.LayerID,
		Outbound: cd.MsFwpDirection == DirectionOutbound,
		Loopback: cd.IsLoopback != 0,
		HasUser:  h.Flags&netEventFlagUserIDSet != 0 && h.UserID != nil,
	}
	if h.Flags&netEventFlagIPProtocolSet != 0 {
		d.Proto = h.IPProtocol
	}
	var lport, rport uint16
	if h.Flags&netEventFlagLocalPortSet != 0 {
		lport = h.LocalPort
	}
	if h.Flags&netEventFlagRemotePortSet != 0 {
		rport = h.RemotePort
	}
	if h.Flags&netEventFlagLocalAddrSet != 0 {
		d.Local = netip.AddrPortFrom(eventAddr(h.IPVersion, h.LocalAddr), lport)
	}
	if h.Flags&netEventFlagRemoteAddrSet != 0 {
		d.Remote = netip.AddrPortFrom(eventAddr(h.IPVersion, h.RemoteAddr), rport)
	}
	if h.Flags&netEventFlagAppIDSet != 0 {
		d.AppID = blobString(h.AppID)
	}
	return d, true
}

// eventAddr reads the address union: an IPv4 address is a UINT32 in host
// (little-endian) byte order, an IPv6 address 16 bytes in network order.
func eventAddr(version uint32, b [16]byte) netip.Addr {
	if version == ipVersion4 {
		return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
	}
	return netip.AddrFrom16(b)
}

func blobBytes(b ByteBlob) []byte {
	if b.Data == nil || b.Size == 0 {
		return nil
	}
	return append([]byte(nil), unsafe.Slice(b.Data, b.Size)...)
}

// blobString reads a blob holding a NUL-terminated UTF-16LE string (an
// app ID).
func blobString(b ByteBlob) string {
	raw := blobBytes(b)
	u := make([]uint16, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		c := uint16(raw[i]) | uint16(raw[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func utf16PtrToString(p *uint16) string {
	if p == nil {
		return ""
	}
	var u []uint16
	for ptr := unsafe.Pointer(p); ; ptr = unsafe.Add(ptr, 2) {
		c := *(*uint16)(ptr)
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
