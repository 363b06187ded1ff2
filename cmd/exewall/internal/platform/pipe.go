package platform

// The Windows API transport. This file has no build tag so that its tests
// run everywhere; pipe_windows.go uses it.

// pipeSDDL is the security descriptor of the service's named pipe. Windows
// has no peer-credential check on a local socket, so the pipe's DACL is the
// whole access control: a protected DACL (P: no inherited entries) that
// grants full access to LocalSystem (SY) and to the Administrators group
// (BA) and to no one else. An Administrators member gets in only from an
// elevated process: in a UAC-filtered token BA is deny-only. Remote clients
// are refused on top of this by go-winio, which creates the pipe with
// PIPE_REJECT_REMOTE_CLIENTS.
const pipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)"

// serviceDependencies are the services the Windows service starts after:
// the Base Filtering Engine, without which no WFP session opens.
var serviceDependencies = []string{"BFE"}
