// Package e2e drives the built exewall binary exactly as a user would: a
// daemon on a scratch cgroup with its own socket, state dir, pin dir and
// policy file, and the CLI against it. The tests are Linux-only, need root
// and cgroup v2, skip without them and fail instead under CI=true.
package e2e
