// Package linux is exewall's eBPF backend: it loads the datapath in ../bpf,
// attaches it to a cgroup v2 directory with pinned multi-attach links, keeps
// the policy in BPF maps (double-buffered by generation), resolves
// executables to the identity the kernel reads, follows the host's on-link
// subnets with netlink and turns the ring buffer into violations.
package linux
