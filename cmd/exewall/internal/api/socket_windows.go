package api

import "github.com/exewall/exewall/windows"

// DefaultSocket is the named pipe the daemon listens on unless told
// otherwise (--socket takes a pipe name on Windows).
const DefaultSocket = windows.DefaultPipeName
