package client

// DefaultSocket is the daemon's named pipe unless told otherwise.
const DefaultSocket = `\\.\pipe\exewall`
