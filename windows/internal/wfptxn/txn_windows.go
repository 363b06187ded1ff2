//go:build windows

package wfptxn

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/tailscale/wf"
)

// tailscale/wf opens the engine session and binds FwpmTransaction*0 but does
// not export them (v0.0.0-20240214030419-6fbb0a674ee6, its newest version),
// and wireguard-windows' firewall package keeps its bindings unexported too.
// An apply must be one WFP transaction (DESIGN.md: no connection is ever
// judged by a mix of two policies), so these three calls are bound here from
// their documented signatures; everything else goes through wf.

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmtransactionbegin0
//sys fwpmTransactionBegin0(engine uintptr, flags uint32) (ret error) [failretval!=0] = fwpuclnt.FwpmTransactionBegin0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmtransactioncommit0
//sys fwpmTransactionCommit0(engine uintptr) (ret error) [failretval!=0] = fwpuclnt.FwpmTransactionCommit0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmtransactionabort0
//sys fwpmTransactionAbort0(engine uintptr) (ret error) [failretval!=0] = fwpuclnt.FwpmTransactionAbort0

// EngineHandle is the WFP engine handle inside a wf.Session. wf keeps it in
// the unexported field "handle"; reflect reads it without unsafe, and a wf
// upgrade that renames it fails here with a clear error instead of
// misbehaving.
func EngineHandle(s *wf.Session) (uintptr, error) {
	v := reflect.ValueOf(s).Elem().FieldByName("handle")
	if !v.IsValid() || v.Kind() != reflect.Uintptr {
		return 0, errors.New("wf.Session has no handle field of kind uintptr: github.com/tailscale/wf changed, update wfptxn.EngineHandle")
	}
	h := uintptr(v.Uint())
	if h == 0 {
		return 0, errors.New("wfp session is closed")
	}
	return h, nil
}

// Do runs fn in one WFP transaction on s: every change fn makes
// through s becomes visible at once on commit, or not at all.
func Do(s *wf.Session, fn func() error) (err error) {
	h, err := EngineHandle(s)
	if err != nil {
		return err
	}
	if err := fwpmTransactionBegin0(h, 0); err != nil {
		return fmt.Errorf("begin wfp transaction: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if aerr := fwpmTransactionAbort0(h); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort wfp transaction: %w", aerr))
		}
	}()
	if err := fn(); err != nil {
		return err
	}
	if err := fwpmTransactionCommit0(h); err != nil {
		return fmt.Errorf("commit wfp transaction: %w", err)
	}
	committed = true
	return nil
}
