//go:build linux

package main

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachProgram loads spec and attaches it at its attach type on cgroup cg
// with an unpinned link (it detaches when closed, or when the benchmark
// dies), both registered with the cleaner under what. The empty programs
// and the building blocks are attached this way.
func (b *bench) attachProgram(what, cg string, spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	var prog *ebpf.Program
	var l link.Link
	err := b.cl.create(what, func() error {
		if l != nil {
			l.Close()
		}
		if prog != nil {
			prog.Close()
		}
		return nil
	}, func() error {
		var err error
		if prog, err = ebpf.NewProgram(spec); err != nil {
			return fmt.Errorf("load %s: %w", what, err)
		}
		l, err = link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: spec.AttachType, Program: prog})
		return err
	})
	return prog, err
}
