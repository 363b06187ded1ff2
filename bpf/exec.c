// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Exec-time identity.
 *
 * exewall_exec takes what a process is judged as at exec and keeps it in the
 * thread group leader's task storage (struct proc_ident): the file exec'd,
 * and the file behind it when that is another (overlayfs maps the lower
 * file: the code mapping's vm_file). prctl(PR_SET_MM_MAP) or
 * PR_SET_MM_EXE_FILE change mm->exe_file afterwards, never this record.
 * exewall_fork copies it to a new process (fork, vfork, clone without
 * CLONE_THREAD); threads (io-wq workers included) share their leader's.
 *
 * A dynamic loader run directly (ld.so PROGRAM) is judged as the program it
 * maps: the exec hook marks the process IDENT_LOADER_PENDING and
 * exewall_loader_read takes the first other file the loader reads (it reads
 * PROGRAM's ELF header before mapping it, before any of PROGRAM's code or
 * any library runs).
 *
 * Also: when a package upgrade renames a new file over an exe rule's path,
 * the new inode is unknown to exe_rules until userspace re-resolves it. The
 * exec hook recognises such a file at its first exec by its location (parent
 * directory identity + name) and records it, so the process is judged by the
 * rule from its first packet. */
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
 * execve, absolute when the caller gave one (PATH lookups do).
 *
 * 4,096 identities, the least recently executed evicted first: an event
 * names its program from here while that program is among the last 4,096
 * distinct executables run, and otherwise from /proc/PID/exe when the
 * process still runs it (linux/exenames.go); only an event of a process
 * that has exited or exec'd since, of a program that many executables
 * ago, goes without a name. An LRU hash is preallocated whatever it holds:
 * 16,384 entries of 264 bytes held 5.4 MiB of kernel memory for every
 * daemon, 4,096 hold 1.4 MiB. */
#define EXE_PATH_MAX 256
struct exe_name {
	__u32 tgid; /* who executed it: resolves a relative name via /proc */
	__u32 _pad;
	char path[EXE_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
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
	if (!sized_lookup(&name_rules, &nk))
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

static __always_inline int same_id(struct file_id *a, struct file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->igen == b->igen;
}

static __always_inline void pending_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *p = bpf_map_lookup_elem(&loader_pending, &zero);
	if (p)
		__sync_fetch_and_add(p, n);
}

/* leave_pending ends IDENT_LOADER_PENDING. Every transition happens in the
 * loader's own (single) thread: at its exec, its reads, its exit. */
static __always_inline int leave_pending(struct proc_ident *id, __u8 to)
{
	if (id->state != IDENT_LOADER_PENDING)
		return 0;
	id->state = to;
	pending_add(-1);
	return 1;
}

struct vma_ctx {
	struct file_id id;
	int found;
};

static long code_file(struct task_struct *task, struct vm_area_struct *vma, struct vma_ctx *c)
{
	struct file *f = vma->vm_file;
	if (f) {
		file_id_of(f->f_inode, &c->id);
		c->found = 1;
	}
	return 0;
}

/* invalidate_cache drops the current thread's selected rule: its identity
 * just changed. */
static __always_inline void invalidate_cache(struct task_struct *task)
{
	if (!use_task_storage)
		return;
	struct task_state *ts = bpf_task_storage_get(&task_states, task, 0, 0);
	if (ts)
		ts->cache.valid = 0;
}

static __always_inline void learn_path(struct linux_binprm *bprm, struct file *file, struct file_id *id)
{
	/* Not bound to a cgroup: act only for tasks inside exewall's. */
	if (bpf_current_task_under_cgroup(&attach_cgroup, 0) != 1)
		return;
	name_exe(bprm, id);
	__u32 zero = 0;
	__u32 *genp = bpf_map_lookup_elem(&active, &zero);
	if (!genp)
		return;
	__u32 gen = *genp & 1;
	struct exe_key ek = { .id = *id, .gen = gen };
	if (sized_lookup(&exe_rules, &ek))
		return; /* known: nothing to learn */

	struct dentry *d = file->f_path.dentry;
	struct path_key pk = { .gen = gen };
	file_id_of(d->d_parent->d_inode, &pk.dir);
	const unsigned char *name = d->d_name.name;
	if (bpf_probe_read_kernel_str(pk.name, sizeof(pk.name), name) < 0)
		return;
	if (!sized_lookup(&path_rules, &pk)) {
		learn_name(bprm, id, gen);
		return;
	}
	pk.gen = 0;
	bpf_map_update_elem(&exe_learned, id, &pk, BPF_ANY);
	__u32 *n = bpf_map_lookup_elem(&learned_count, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exewall_exec, struct task_struct *p, __s32 old_pid, struct linux_binprm *bprm)
{
	struct file *file = bprm->file;
	if (!file)
		return 0;
	struct proc_ident rec = { .state = IDENT_EXEC };
	file_id_of(file->f_inode, &rec.exe);

	/* The file behind the one exec'd: the code mapping's vm_file is
	 * overlayfs' lower (or upper) file, where exe_file is the overlay's. */
	struct mm_struct *mm = p->mm;
	if (mm) {
		struct vma_ctx c = {};
		bpf_find_vma(p, mm->start_code, code_file, &c, 0);
		if (c.found && !same_id(&c.id, &rec.exe)) {
			rec.real = c.id;
			rec.has_real = 1;
		}
	}
	if (bpf_map_lookup_elem(&loaders, &rec.exe) || (rec.has_real && bpf_map_lookup_elem(&loaders, &rec.real)))
		rec.state = IDENT_LOADER_PENDING;

	struct proc_ident *id = ident_of(p, 1);
	if (id) {
		if (id->state == IDENT_LOADER_PENDING)
			leave_pending(id, IDENT_EXEC);
		*id = rec;
		if (rec.state == IDENT_LOADER_PENDING)
			pending_add(1);
	}
	invalidate_cache(p);
	learn_path(bprm, file, &rec.exe);
	return 0;
}

/* A new process inherits its parent's identity: it runs the same code until
 * it execs. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(exewall_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a thread: shares its leader's */
	struct proc_ident *pid = ident_of(parent, 0);
	if (!pid || pid->state == IDENT_NONE)
		return 0;
	struct proc_ident rec = *pid;
	if (rec.state == IDENT_LOADER_PENDING)
		rec.state = IDENT_EXEC; /* only the loader's own process follows it */
	struct proc_ident *cid = ident_of(child, 1);
	if (cid)
		*cid = rec;
	return 0;
}

/* The first file a directly run loader reads besides itself is the program
 * it was asked to run (glibc and musl read its ELF header before mapping
 * it). Every file read of the host passes here: loader_pending keeps that
 * to one array lookup while no loader is starting. */
SEC("tp_btf/mm_filemap_get_pages")
int BPF_PROG(exewall_loader_read, struct address_space *mapping, unsigned long index, unsigned long last)
{
	__u32 zero = 0;
	__s64 *pending = bpf_map_lookup_elem(&loader_pending, &zero);
	if (!pending || *pending <= 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct proc_ident *id = ident_of(task, 0);
	if (!id || id->state != IDENT_LOADER_PENDING)
		return 0;
	struct inode *inode = mapping->host;
	if (!inode)
		return 0;
	struct file_id f = {};
	file_id_of(inode, &f);
	if (same_id(&f, &id->exe) || (id->has_real && same_id(&f, &id->real)))
		return 0;
	if (!leave_pending(id, IDENT_LOADER_MAIN))
		return 0;
	id->exe = f;
	id->has_real = 0;
	invalidate_cache(task);
	return 0;
}

/* A loader that exits before reading a program leaves the pending count. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(exewall_exit, struct task_struct *p)
{
	if (p->pid != p->tgid)
		return 0;
	if (!use_task_storage) {
		__u32 tgid = p->tgid;
		struct proc_ident *id = bpf_map_lookup_elem(&proc_idents, &tgid);
		if (id && id->state == IDENT_LOADER_PENDING)
			leave_pending(id, IDENT_EXEC);
		bpf_map_delete_elem(&proc_idents, &tgid);
		return 0;
	}
	struct task_state *ts = bpf_task_storage_get(&task_states, p, 0, 0);
	if (ts && ts->id.state == IDENT_LOADER_PENDING)
		leave_pending(&ts->id, IDENT_EXEC);
	return 0;
}

/* Seeds identities of processes that were running before exewall loaded
 * (run once at start): mm->exe_file as it is then. */
SEC("iter/task")
int exewall_seed(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task || task->pid != task->tgid)
		return 0;
	struct mm_struct *mm = task->mm;
	if (!mm)
		return 0;
	struct file *exe = mm->exe_file;
	if (!exe)
		return 0;
	struct proc_ident *id = ident_of(task, 1);
	if (!id || id->state != IDENT_NONE)
		return 0;
	struct proc_ident rec = { .state = IDENT_FIRST_SIGHT };
	file_id_of(exe->f_inode, &rec.exe);
	*id = rec;
	return 0;
}
