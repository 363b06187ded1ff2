//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// The blocks after blockEmpty, each doing what the one before does and one
// thing more.
const (
	blockWord  = "read one word of a map (the policy word)"
	blockSlot  = "+ this CPU's 128-byte slot of a second map"
	blockCount = "+ count in the slot (compare-and-exchange)"
	// Apart from the others: what the datapath's UDP peer note starts with.
	// Measured at sendmsg4 only, where the client reuses its socket (at
	// connect4 every socket is new and the lookup would create the value).
	blockSkStorage = "a socket-storage lookup that finds its value (alone)"
	// Apart from the others, in pairs: a lookup as the datapath did it
	// before its maps were sized to the policy, and as it does it now
	// (linux/sized.go: an array of one map in front of the hash; counters
	// in chunks of per-CPU slots). Each finds its value.
	blockHash        = "a hash lookup, 24-byte key (alone)"
	blockSizedHash   = "the same hash through an array of one map (alone)"
	blockPercpu      = "a per-CPU array slot (alone)"
	blockChunkPercpu = "the same slot through an array of chunks (alone)"
)

// hashKeySize is the size of the datapath's dest_key (bpf/exewall.h).
const hashKeySize = 24

// blockOrder lists the blocks, each doing what the one before does and one
// thing more.
var blockOrder = []string{blockEmpty, blockWord, blockSlot, blockCount, blockSkStorage,
	blockHash, blockSizedHash, blockPercpu, blockChunkPercpu}

// blocksSection measures the building blocks of a verdict (blockOrder),
// each alone in a program attached to the client's cgroup, interleaved over
// the rounds, with the same client and bpf_stats reading as the connect
// section's profile. The blocks are written in eBPF assembly here rather
// than C: they are a few instructions each, and need no generated object.
func (b *bench) blocksSection() error {
	mark := b.cl.mark()
	defer b.cl.release(mark)
	var word, slots, sks, hash, sizedHash, percpu, chunks *ebpf.Map
	err := b.cl.create("building-block maps", func() error {
		for _, m := range []*ebpf.Map{word, slots, sks, hash, sizedHash, percpu, chunks} {
			if m != nil {
				m.Close()
			}
		}
		return nil
	}, func() error {
		var err error
		if word, err = ebpf.NewMap(&ebpf.MapSpec{Name: "bench_word", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}); err != nil {
			return err
		}
		if slots, err = ebpf.NewMap(&ebpf.MapSpec{Name: "bench_slots", Type: ebpf.Array, KeySize: 4, ValueSize: 128, MaxEntries: 128}); err != nil {
			return err
		}
		// Socket storage needs BTF for its key and value: an int, and 64
		// bytes (as an array of eight u64).
		u64 := &btf.Int{Name: "u64", Size: 8}
		sks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "bench_sks", Type: ebpf.SkStorage, KeySize: 4, ValueSize: 64, Flags: unix.BPF_F_NO_PREALLOC,
			Key:   &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
			Value: &btf.Struct{Name: "bench_sk_value", Size: 64, Members: []btf.Member{{Name: "v", Type: &btf.Array{Index: u64, Type: u64, Nelems: 8}}}}})
		if err != nil {
			return err
		}
		hash, sizedHash, err = blockHashes()
		if err != nil {
			return err
		}
		percpu, chunks, err = blockPercpus()
		return err
	})
	if err != nil {
		return fmt.Errorf("building-block maps: %w", err)
	}
	hooks := []struct {
		name string
		at   ebpf.AttachType
		op   string
	}{{"connect4", ebpf.AttachCGroupInet4Connect, opTCP}, {"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, opUDP}}
	rounds := max(b.o.rounds, 3)
	got := map[[2]string][]float64{}
	for round := range rounds {
		for i := range blockOrder {
			block := blockOrder[(i+round)%len(blockOrder)] // each block first in some round
			for _, h := range hooks {
				if block == blockSkStorage && h.name != "sendmsg4" {
					continue
				}
				ns, err := b.blockRun(block, h.at, h.op, blockMaps{word, slots, sks, hash, sizedHash, percpu, chunks})
				if err != nil {
					return fmt.Errorf("%s at %s: %w", block, h.name, err)
				}
				k := [2]string{block, h.name}
				got[k] = append(got[k], ns)
			}
		}
	}
	for _, h := range hooks {
		for _, block := range blockOrder {
			v := got[[2]string{block, h.name}]
			if len(v) == 0 {
				continue
			}
			b.rep.Blocks = append(b.rep.Blocks, BlockCost{Block: block, Hook: h.name, NsPerRun: v, Median: median(v)})
		}
	}
	return nil
}

// blockRun attaches the program of one block at hook at on the client's
// cgroup, reads its run time while the client runs op, and detaches it.
// bpfSockAddrSk is the offset of sk in struct bpf_sock_addr (uapi
// linux/bpf.h: eleven u32 fields and two u32[4] before it).
const bpfSockAddrSk = 64

// blockMaps are the maps the blocks read.
type blockMaps struct{ word, slots, sks, hash, sizedHash, percpu, chunks *ebpf.Map }

// blockHashKey is the key the hash blocks find: a dest_key-sized key with
// its first word set.
func blockHashKey() []byte {
	k := make([]byte, hashKeySize)
	k[0] = 7
	return k
}

// blockHashes are a hash holding blockHashKey and an array of one map
// whose slot 0 holds a second such hash, both created with the flags and
// size the datapath's policy-sized hashes have (BPF_F_NO_PREALLOC, 1,024
// entries: linux/sized.go's floor).
func blockHashes() (hash, outer *ebpf.Map, err error) {
	spec := &ebpf.MapSpec{Name: "bench_hash", Type: ebpf.Hash, KeySize: hashKeySize, ValueSize: 8, MaxEntries: 1024, Flags: unix.BPF_F_NO_PREALLOC}
	return directAndOuter(spec, "bench_sized", 1, func(m *ebpf.Map) error { return m.Put(blockHashKey(), uint64(1)) })
}

// blockPercpus are a per-CPU array of 512 32-byte slots (a counter chunk)
// and an array of chunks whose slot 0 holds a second one.
func blockPercpus() (percpu, chunks *ebpf.Map, err error) {
	spec := &ebpf.MapSpec{Name: "bench_percpu", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 32, MaxEntries: 512}
	return directAndOuter(spec, "bench_chunks", 512, func(*ebpf.Map) error { return nil })
}

// directAndOuter creates a map of spec, filled by fill, and an array of
// maps of entries slots whose slot 0 holds a second one, filled alike.
func directAndOuter(spec *ebpf.MapSpec, outerName string, entries uint32, fill func(*ebpf.Map) error) (direct, outer *ebpf.Map, err error) {
	inner, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, nil, err
	}
	defer inner.Close()
	if direct, err = ebpf.NewMap(spec); err != nil {
		return nil, nil, err
	}
	err = errors.Join(fill(direct), fill(inner))
	if err == nil {
		outer, err = ebpf.NewMap(&ebpf.MapSpec{Name: outerName, Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: entries, InnerMap: spec})
	}
	if err == nil {
		err = outer.Put(uint32(0), inner)
	}
	if err != nil {
		direct.Close()
		if outer != nil {
			outer.Close()
		}
		return nil, nil, err
	}
	return direct, outer, nil
}

// lookupInsns looks up the key at fp+keyOff in the map in R1 (a map
// pointer, loaded or found) and jumps out when absent; R0 is the value.
func lookupInsns(keyOff int16) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	}
}

// pairInsns is the program of one of the paired blocks: the same lookup,
// directly or through slot 0 of an array of maps, then one word read.
func pairInsns(block string, maps blockMaps) asm.Instructions {
	var insns asm.Instructions
	var keyOff int16
	switch block {
	case blockHash, blockSizedHash:
		keyOff = -hashKeySize
		k := blockHashKey()
		for off := 0; off < hashKeySize; off += 4 {
			v := int64(k[off]) | int64(k[off+1])<<8 | int64(k[off+2])<<16 | int64(k[off+3])<<24
			insns = append(insns, asm.StoreImm(asm.RFP, keyOff+int16(off), v, asm.Word))
		}
	default:
		keyOff = -8
		insns = append(insns, asm.StoreImm(asm.RFP, keyOff, 5, asm.Word)) // slot 5
	}
	direct, outer := maps.hash, maps.sizedHash
	if block == blockPercpu || block == blockChunkPercpu {
		direct, outer = maps.percpu, maps.chunks
	}
	if block == blockHash || block == blockPercpu {
		insns = append(insns, asm.LoadMapPtr(asm.R1, direct.FD()))
	} else {
		// slot 0 of the outer array (the verifier inlines this lookup),
		// then the map found there.
		insns = append(insns, asm.StoreImm(asm.RFP, -32, 0, asm.Word), asm.LoadMapPtr(asm.R1, outer.FD()))
		insns = append(insns, lookupInsns(-32)...)
		insns = append(insns, asm.Mov.Reg(asm.R1, asm.R0))
	}
	insns = append(insns, lookupInsns(keyOff)...)
	return append(insns, asm.LoadMem(asm.R6, asm.R0, 0, asm.Word))
}

func (b *bench) blockRun(block string, at ebpf.AttachType, op string, maps blockMaps) (float64, error) {
	mark := b.cl.mark()
	defer b.cl.release(mark)
	_, err := b.attachProgram("building-block program", b.clientCg, &ebpf.ProgramSpec{Name: "bench_block", Type: ebpf.CGroupSockAddr,
		AttachType: at, License: "GPL", Instructions: blockInsns(block, maps)})
	if err != nil {
		return 0, err
	}
	ps, err := b.profileAttached("block", 0, op)
	if err != nil {
		return 0, err
	}
	if len(ps) != 1 {
		fmt.Fprintf(os.Stderr, "bench: %d programs at the client's cgroup, want only the block's\n", len(ps))
		return 0, fmt.Errorf("%d programs attached to the client's cgroup, want 1", len(ps))
	}
	return ps[0].NsPerRun, nil
}

// blockInsns is the program of one block; every block returns allow.
func blockInsns(block string, maps blockMaps) asm.Instructions {
	out := asm.Instructions{asm.Mov.Imm(asm.R0, 1).WithSymbol("out"), asm.Return()}
	switch block {
	case blockEmpty:
		return out
	case blockHash, blockSizedHash, blockPercpu, blockChunkPercpu:
		return append(pairInsns(block, maps), out...)
	case blockSkStorage:
		// bpf_sk_storage_get(map, ctx->sk, NULL, F_CREATE): the first send
		// creates the value, every later one finds it.
		return append(asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, bpfSockAddrSk, asm.DWord),
			asm.JEq.Imm(asm.R2, 0, "out"),
			asm.LoadMapPtr(asm.R1, maps.sks.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.Mov.Imm(asm.R4, 1), // BPF_SK_STORAGE_GET_F_CREATE
			asm.FnSkStorageGet.Call(),
		}, out...)
	}
	// The policy word: element 0 of a one-element array (the verifier
	// inlines the lookup), read.
	insns := asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, maps.word.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R6, asm.R0, 0, asm.Word),
	}
	if block == blockWord {
		return append(insns, out...)
	}
	// This CPU's slot of a 128-entry array of 128-byte values (the memo's
	// layout), its state word read.
	insns = append(insns,
		asm.FnGetSmpProcessorId.Call(),
		asm.And.Imm(asm.R0, 63),
		asm.LSh.Imm(asm.R0, 1),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.Word),
		asm.LoadMapPtr(asm.R1, maps.slots.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R0, asm.R7, 8, asm.DWord),
	)
	if block == blockSlot {
		return append(insns, out...)
	}
	// Count: state+1 if it did not move (the memo hit's exchange).
	insns = append(insns,
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Add.Imm(asm.R1, 1),
		asm.CmpXchg.Mem(asm.R7, asm.R1, asm.DWord, 8),
	)
	return append(insns, out...)
}
