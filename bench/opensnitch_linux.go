//go:build linux

package main

func (b *bench) openSnitchSetup() (engineSetup, bool) {
	b.rep.note("OpenSnitch: not implemented yet")
	return engineSetup{}, false
}
