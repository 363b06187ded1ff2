package client

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/exewall/exewall.sock"
