/* Whether a process or a socket's creator is held by a rule that is not
 * unrestricted: the question the guard programs ask before letting a
 * restricted program set a source route or send a ping. It mirrors
 * select_rule in exewall.c (executable, else deepest cgroup, else uid, else
 * gid) over an identity given as data, so it can judge a socket's recorded
 * creator as well as the current task. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "kernel_types.h"
#include "maps.h"

/* The identity one judgement is about. cgroup levels come from the current
 * task (skb == NULL) or from the socket of skb (its creator's cgroup). */
struct who {
	struct file_id exe;
	struct file_id real; /* the file behind exe (overlayfs), when has_real */
	__u32 has_exe;
	__u32 has_real;
	__u32 uid;
	__u32 gid;
};

/* who_current reads the current task's identity the way the datapath does
 * (current_ident in exewall.c): the one taken at exec, else mm->exe_file;
 * returns -1 for a kernel thread. */
static __always_inline int who_current(struct who *w)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	if (!mm)
		return -1;
	struct proc_ident *id = ident_of(task, 0);
	struct file *exe = mm->exe_file;
	if (id && id->state != IDENT_NONE) {
		w->exe = id->exe;
		w->real = id->real;
		w->has_real = id->has_real;
		w->has_exe = 1;
	} else if (exe) {
		struct inode *inode = exe->f_inode;
		w->exe.dev = inode->i_sb->s_dev;
		w->exe.igen = inode->i_generation;
		w->exe.ino = inode->i_ino;
		w->has_exe = 1;
	}
	__u64 uid_gid = bpf_get_current_uid_gid();
	w->uid = (__u32)uid_gid;
	w->gid = uid_gid >> 32;
	return 0;
}

static __always_inline void who_owner(struct who *w, const struct sock_owner *o)
{
	w->exe = o->exe;
	w->has_exe = o->has_exe;
	w->uid = o->uid;
	w->gid = o->gid;
}

static __always_inline struct config *guard_config(__u32 *gen)
{
	__u32 zero = 0;
	__u32 *genp = bpf_map_lookup_elem(&active, &zero);
	if (!genp)
		return NULL;
	*gen = *genp & 1;
	return bpf_map_lookup_elem(&configs, gen);
}

static __always_inline struct rule *guard_rule(struct config *cfg, __u32 gen, struct who *w, struct __sk_buff *skb)
{
	struct rule *r = NULL;
	if (w->has_exe) {
		struct exe_key k = { .id = w->exe, .gen = gen };
		r = bpf_map_lookup_elem(&exe_rules, &k);
		if (!r && w->has_real) {
			k.id = w->real;
			r = bpf_map_lookup_elem(&exe_rules, &k);
		}
		if (!r) {
			__u32 zero = 0;
			__u32 *n = bpf_map_lookup_elem(&learned_count, &zero);
			struct path_key *pk = n && *n ? bpf_map_lookup_elem(&exe_learned, &w->exe) : NULL;
			if (pk) {
				struct path_key lk = *pk;
				lk.gen = gen;
				r = bpf_map_lookup_elem(&path_rules, &lk);
			}
		}
	}
	if (!r && cfg->has_cgroup_rules) {
		struct id_key k = { .gen = gen };
		for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
			k.id = skb ? bpf_skb_ancestor_cgroup_id(skb, level) : bpf_get_current_ancestor_cgroup_id(level);
			if (!k.id)
				break;
			struct rule *c = bpf_map_lookup_elem(&cgroup_rules, &k);
			if (c)
				r = c;
		}
	}
	if (!r && cfg->has_uid_rules) {
		struct id_key k = { .id = w->uid, .gen = gen };
		r = bpf_map_lookup_elem(&uid_rules, &k);
	}
	if (!r && cfg->has_gid_rules) {
		struct id_key k = { .id = w->gid, .gen = gen };
		r = bpf_map_lookup_elem(&gid_rules, &k);
	}
	return r;
}

/* restricted: 1 when the identity's rule is not unrestricted and the policy
 * enforces (audit mode and audit rules only report, so they pass here). */
static __always_inline int restricted(struct who *w, struct __sk_buff *skb)
{
	__u32 gen;
	struct config *cfg = guard_config(&gen);
	if (!cfg || cfg->audit_mode)
		return 0;
	struct rule *r = guard_rule(cfg, gen, w, skb);
	if (r)
		return !r->unrestricted && !r->audit;
	return cfg->default_action != ACTION_ALLOW;
}
