// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Exec-time identity: when a package upgrade renames a new file over an exe
 * rule's path, the new inode is unknown to exe_rules until userspace
 * re-resolves it. This hook recognises such a file at its first exec by its
 * location (parent directory identity + name) and records it, so the process
 * is judged by the rule from its first packet. */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kernel_types.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The path each executable identity was last executed by, so the daemon names
 * an event's program from the identity the event carries, never from a PID
 * (which may have exec'd something else, or been reused, by the time the
 * event is read). bpf_d_path is refused in tp_btf: this is the name given to
 * execve, absolute when the caller gave one (PATH lookups do). */
#define EXE_PATH_MAX 256
struct exe_name {
	__u32 tgid; /* who executed it: resolves a relative name via /proc */
	__u32 _pad;
	char path[EXE_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct file_id);
	__type(value, struct exe_name);
} exe_names SEC(".maps");

/* Per-CPU scratch: the value is too large for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exe_name);
} exe_name_scratch SEC(".maps");

const struct exe_name *unused_exe_name __attribute__((unused));

static __always_inline void name_exe(struct linux_binprm *bprm, struct file_id *id)
{
	__u32 zero = 0;
	struct exe_name *n = bpf_map_lookup_elem(&exe_name_scratch, &zero);
	if (!n)
		return;
	n->tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_probe_read_kernel_str(n->path, sizeof(n->path), bprm->interp) < 0)
		return;
	bpf_map_update_elem(&exe_names, id, n, BPF_ANY);
}

/* FNV-1a of the name execve was given, as userspace hashes a rule's path
 * (linux/names.go). Uses the scratch buffer: call after name_exe. */
static __always_inline int exec_name_hash(struct linux_binprm *bprm, __u64 *hash)
{
	__u32 zero = 0;
	struct exe_name *n = bpf_map_lookup_elem(&exe_name_scratch, &zero);
	if (!n)
		return 0;
	if (bpf_probe_read_kernel_str(n->path, sizeof(n->path), bprm->filename) <= 0)
		return 0;
	__u64 h = 14695981039346656037ULL;
	for (int i = 0; i < EXE_PATH_MAX; i++) {
		char c = n->path[i];
		if (!c)
			break;
		h ^= (__u8)c;
		h *= 1099511628211ULL;
	}
	*hash = h;
	return 1;
}

/* learn_name records an unknown executable run by an exe rule's name (a
 * retargeted symlink): the datapath lets that rule tighten its verdict. */
static __always_inline void learn_name(struct linux_binprm *bprm, struct file_id *id, __u32 gen)
{
	struct name_key nk = { .gen = gen };
	if (!exec_name_hash(bprm, &nk.hash))
		return;
	if (!bpf_map_lookup_elem(&name_rules, &nk))
		return;
	bpf_map_update_elem(&exe_named, id, &nk.hash, BPF_ANY);
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&learned_count, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void file_id_of(struct inode *inode, struct file_id *id)
{
	id->dev = inode->i_sb->s_dev;
	id->igen = inode->i_generation;
	id->ino = inode->i_ino;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exewall_exec, struct task_struct *p, __s32 old_pid, struct linux_binprm *bprm)
{
	/* Not bound to a cgroup: act only for tasks inside exewall's. */
	if (bpf_current_task_under_cgroup(&attach_cgroup, 0) != 1)
		return 0;

	struct file *file = bprm->file;
	if (!file)
		return 0;
	struct file_id id = {};
	file_id_of(file->f_inode, &id);
	name_exe(bprm, &id);

	__u32 zero = 0;
	__u32 *genp = bpf_map_lookup_elem(&active, &zero);
	if (!genp)
		return 0;
	__u32 gen = *genp & 1;
	struct exe_key ek = { .id = id, .gen = gen };
	if (bpf_map_lookup_elem(&exe_rules, &ek))
		return 0; /* known: nothing to learn */

	struct dentry *d = file->f_path.dentry;
	struct path_key pk = { .gen = gen };
	file_id_of(d->d_parent->d_inode, &pk.dir);
	const unsigned char *name = d->d_name.name;
	if (bpf_probe_read_kernel_str(pk.name, sizeof(pk.name), name) < 0)
		return 0;
	if (!bpf_map_lookup_elem(&path_rules, &pk)) {
		learn_name(bprm, &id, gen);
		return 0;
	}
	pk.gen = 0;
	bpf_map_update_elem(&exe_learned, &id, &pk, BPF_ANY);
	__u32 *n = bpf_map_lookup_elem(&learned_count, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
