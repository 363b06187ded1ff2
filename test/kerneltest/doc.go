// Package kerneltest is the one harness of exewall's kernel tests (linux/,
// test/e2e) and of the benchmark: scratch cgroups and pin dirs, hosts in
// network namespaces, copies of the running binary that act as clients
// (one JSON protocol, see Attempt), loopback listeners, one build of the
// exewall binary per source tree, and the skip policy: a test that cannot
// run here skips, and fails instead under CI=true.
//
// It imports nothing of exewall, so linux's own tests can use it.
package kerneltest
