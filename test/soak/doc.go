// Package soak runs exewall under sustained load: a denied-connect storm
// from several client processes in a scratch cgroup together with
// concurrent CLI readers and writers, for a bounded time
// (EXEWALL_SOAK_DURATION, default 60s). It checks the kernel's counters
// exactly, bounds the daemon's memory and measures API latency, and prints
// the figures docs/RELIABILITY.md quotes. It needs root and cgroup v2,
// skips without them, and fails instead under CI=true.
package soak
