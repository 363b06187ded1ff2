//go:build windows

package fwpm

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmfiltercreateenumhandle0
//sys fwpmFilterCreateEnumHandle0(engine uintptr, template *FilterEnumTemplate0, enum *windows.Handle) (ret error) [failretval!=0] = fwpuclnt.FwpmFilterCreateEnumHandle0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmfilterenum0
//sys fwpmFilterEnum0(engine uintptr, enum windows.Handle, requested uint32, entries ***Filter0, returned *uint32) (ret error) [failretval!=0] = fwpuclnt.FwpmFilterEnum0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmfilterdestroyenumhandle0
//sys fwpmFilterDestroyEnumHandle0(engine uintptr, enum windows.Handle) (ret error) [failretval!=0] = fwpuclnt.FwpmFilterDestroyEnumHandle0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmneteventsubscribe0
//sys fwpmNetEventSubscribe0(engine uintptr, subscription *NetEventSubscription0, callback uintptr, context uintptr, events *windows.Handle) (ret error) [failretval!=0] = fwpuclnt.FwpmNetEventSubscribe0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmneteventunsubscribe0
//sys fwpmNetEventUnsubscribe0(engine uintptr, events windows.Handle) (ret error) [failretval!=0] = fwpuclnt.FwpmNetEventUnsubscribe0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmenginegetoption0
//sys fwpmEngineGetOption0(engine uintptr, option uint32, value **Value0) (ret error) [failretval!=0] = fwpuclnt.FwpmEngineGetOption0

// https://learn.microsoft.com/en-us/windows/win32/api/fwpmu/nf-fwpmu-fwpmfreememory0
//sys fwpmFreeMemory0(p *uintptr) = fwpuclnt.FwpmFreeMemory0
