// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Layout migration of per-object storage. Userspace copies the entries of a
 * pinned map whose layout changed into the new map itself, but socket and
 * task storage cannot be listed from userspace: these iterators copy every
 * object's value instead (the common prefix; fields a new layout appends
 * start zeroed). Userspace sets copy_size and replaces the old_* and new_*
 * placeholders with the real maps. Sockets are walked with the TCP and UDP
 * iterators of the daemon's network namespace (the ones the held-socket
 * sweep judges); iter/bpf_sk_storage_map, which would walk the map itself,
 * is refused by some kernels that allow these. */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "kernel_types.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The largest value the placeholders declare; the real maps' sizes decide
 * what the verifier allows. */
struct blob {
	__u8 b[4096];
};

const volatile __u32 copy_size = 0;
/* Where the new map's value holds a bpf_spin_lock (in_socks), which no
 * helper may write: the copy goes around its 4 bytes. ~0: no lock. */
const volatile __u32 lock_off = ~0u;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct blob);
} old_sk SEC(".maps"), new_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct blob);
} old_task SEC(".maps"), new_task SEC(".maps");

/* copy_value copies copy_size bytes of old into dst but the lock's. */
static __always_inline void copy_value(void *dst, void *old)
{
	if (lock_off >= copy_size) {
		bpf_probe_read_kernel(dst, copy_size, old);
		return;
	}
	bpf_probe_read_kernel(dst, lock_off, old);
	if (lock_off + 4 < copy_size)
		bpf_probe_read_kernel(dst + lock_off + 4, copy_size - lock_off - 4, old + lock_off + 4);
}

/* Neither copy overwrites a value the new maps already hold: a hook of the
 * new daemon made it, and it is newer than the old one (linux/migrate.go,
 * identityMaps). The old value is read after the new one is created: the
 * old hooks attached first and run first on the same event, so once the new
 * hook has recorded an exec the old value is that exec's too. */
static __always_inline void copy_sk(struct sock *sk)
{
	void *old = bpf_sk_storage_get(&old_sk, sk, 0, 0);
	if (!old || bpf_sk_storage_get(&new_sk, sk, 0, 0))
		return;
	void *dst = bpf_sk_storage_get(&new_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (dst)
		copy_value(dst, old);
}

SEC("iter/tcp")
int exewall_migrate_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *c = ctx->sk_common;
	if (c && bpf_skc_to_tcp_sock(c))
		copy_sk((struct sock *)c);
	return 0;
}

SEC("iter/udp")
int exewall_migrate_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	if (sk)
		copy_sk(sk);
	return 0;
}

SEC("iter/task")
int exewall_migrate_task(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	void *old = bpf_task_storage_get(&old_task, task, 0, 0);
	if (!old || bpf_task_storage_get(&new_task, task, 0, 0))
		return 0;
	void *dst = bpf_task_storage_get(&new_task, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (dst)
		copy_value(dst, old);
	return 0;
}
