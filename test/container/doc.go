// Package container runs exewall's OCI image (deploy/image) under a real
// container runtime, podman from Debian's packages, with the privileges,
// mounts, host namespaces and command that deploy/kubernetes gives the
// DaemonSet: the test renders the kustomization and translates the pod
// spec into `podman run` flags, redirecting only what must not touch the
// host's real exewall (the pin dir, the attach cgroup, the policy, the
// state and socket directories, the metrics port) to scratch ones. The
// runtime test is Linux-only and needs root; it skips where podman cannot
// run a container and fails instead under CI=true.
package container
