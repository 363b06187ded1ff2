// Package fwpm binds the few Windows Filtering Platform management calls
// exewall needs and github.com/tailscale/wf gets wrong or lacks: listing
// only one provider's filters (wf lists every filter on the system and fails
// on condition types it cannot parse), a filter's run-time id (wf reads
// FWPM_FILTER0.filterId at the wrong offset, tailscale/wf#22), drop events
// by subscription, and the engine's options.
//
// The structures (types.go) are plain Go with no build tags, so their
// layouts are checked on every OS against the Windows SDK's C layouts as
// the mingw-w64 cross-compiler lays them out (layout_test.go). The calls
// are Windows-only.
package fwpm

//go:generate go run golang.org/x/sys/windows/mkwinsyscall -output zsyscall_windows.go syscall_windows.go
