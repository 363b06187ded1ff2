//go:build !linux

package main

import (
	"errors"
	"runtime"
)

func isChild() bool  { return false }
func childMain() int { return 2 }

// run refuses: the harness measures Linux kernel hooks, nftables and iptables.
func run(o options) (*Report, error) {
	return nil, errors.New("the benchmark needs Linux (eBPF, nftables, iptables); this is " + runtime.GOOS)
}
