// Package wfptxn runs a function inside one WFP transaction on a
// github.com/tailscale/wf session. It is Windows-only; this file only keeps
// the package visible to tools on other OSes.
package wfptxn

//go:generate go run golang.org/x/sys/windows/mkwinsyscall -output zsyscall_windows.go txn_windows.go
