//go:build linux

package linux

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// What adoption asks of a pinned program or map: the ids of the maps a
// program uses, a map's id and name. One BPF_OBJ_GET_INFO_BY_FD each,
// where Program.Info and Map.Info also read /proc/self/fdinfo and copy the
// program's instructions, and Program.Info loads and parses the whole
// object's BTF from the kernel for any name of 15 bytes (the kernel's
// limit) to find the full one: 2-3 ms of a start that adopts.

// progInfoHead is struct bpf_prog_info up to map_ids.
type progInfoHead struct {
	Type, ID                uint32
	Tag                     [8]byte
	JitedLen, XlatedLen     uint32
	JitedInsns, XlatedInsns uint64
	LoadTime                uint64
	CreatedByUID, NrMapIDs  uint32
	MapIDs                  uint64
}

// mapInfoHead is struct bpf_map_info up to name.
type mapInfoHead struct {
	Type, ID, KeySize, ValueSize, MaxEntries, Flags uint32
	Name                                            [16]byte
}

func objInfo(fd int, info unsafe.Pointer, size uintptr) error {
	attr := struct {
		fd, len uint32
		info    uint64
	}{uint32(fd), uint32(size), uint64(uintptr(info))}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(info)
	if errno != 0 {
		return errno
	}
	return nil
}

// progMapIDs are the ids of the maps p uses.
func progMapIDs(p *ebpf.Program) ([]ebpf.MapID, error) {
	var head progInfoHead
	if err := objInfo(p.FD(), unsafe.Pointer(&head), unsafe.Sizeof(head)); err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	if head.NrMapIDs == 0 {
		return nil, nil
	}
	ids := make([]ebpf.MapID, head.NrMapIDs)
	again := progInfoHead{NrMapIDs: head.NrMapIDs, MapIDs: uint64(uintptr(unsafe.Pointer(&ids[0])))}
	err := objInfo(p.FD(), unsafe.Pointer(&again), unsafe.Sizeof(again))
	runtime.KeepAlive(ids)
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	// The program cannot have gained maps since the first call.
	return ids[:min(again.NrMapIDs, head.NrMapIDs)], nil
}

// mapIDName is m's kernel id and name (15 bytes at most).
func mapIDName(m *ebpf.Map) (ebpf.MapID, string, error) {
	var head mapInfoHead
	if err := objInfo(m.FD(), unsafe.Pointer(&head), unsafe.Sizeof(head)); err != nil {
		return 0, "", fmt.Errorf("map info: %w", err)
	}
	return ebpf.MapID(head.ID), unix.ByteSliceToString(head.Name[:]), nil
}
