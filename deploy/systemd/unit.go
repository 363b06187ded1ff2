// Package systemd holds exewall's systemd unit, exewall.service, so that
// `exewall service install` writes the very file `make install` copies:
// the unit stays one file, here, and the binary embeds it.
package systemd

import _ "embed"

// Unit is the text of exewall.service.
//
//go:embed exewall.service
var Unit string

// ExecPath is the binary the unit's ExecStart runs as shipped (where
// `make install` puts it).
const ExecPath = "/usr/local/bin/exewall"
