/* How a verdict is reached, shared by every object that judges: the rule a
 * process falls under (selected once per thread and policy generation and
 * cached in task storage, with a per-CPU memo in front of it), destination
 * matching, local ranges and counters. Include it after the object's
 * LICENSE; every function is static __always_inline except decide. The
 * guard's "is this identity restricted" questions are at the end. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "kernel_types.h"
#include "maps.h"

#define PF_KTHREAD 0x00200000

/* kernel_thread: task is a kernel thread (no user memory, no executable),
 * never judged. Read from its flags, not as !task->mm: the verifier looks
 * a pointer field of a trusted task up in the kernel's BTF by name, a
 * linear search of ~1 ms here, at every state that reaches the load. */
static __always_inline int kernel_thread(struct task_struct *task)
{
	return task->flags & PF_KTHREAD;
}

/* bpf_rdonly_cast (Linux 6.2) views a kernel pointer as untrusted; the
 * verifier turns the call into a move. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* untrusted_task is task for reading pointers out of: task->mm from a trusted
 * task is untrusted anyway, but the verifier first looks the field up in
 * the kernel's BTF by name (task_struct__safe_trusted and three more, each
 * a linear search of its ~126,000 types) at every state that reaches the
 * load; from an untrusted task it looks nothing up. */
static __always_inline struct task_struct *untrusted_task(struct task_struct *task)
{
	if (bpf_rdonly_cast) /* (weak: 0 when the kernel lacks it) */
		return bpf_rdonly_cast(task, bpf_core_type_id_kernel(struct task_struct));
	return task;
}

/* The identity the current process is judged as (DESIGN.md "Identity of an
 * executable"): the one taken at exec. A process started before exewall
 * loaded has none: it is taken from mm->exe_file the first time the process
 * is seen, and kept from then on. Returns 0 without an executable. */
static __always_inline int current_ident(struct task_struct *task, struct proc_ident *out)
{
	struct proc_ident *id = ident_of(task, 1);
	if (id && id->state != IDENT_NONE) {
		*out = *id;
		return 1;
	}
	struct file *exe = untrusted_task(task)->mm->exe_file;
	if (!exe)
		return 0;
	struct inode *inode = exe->f_inode;
	out->exe.dev = inode->i_sb->s_dev;
	out->exe.igen = inode->i_generation;
	out->exe.ino = inode->i_ino;
	out->has_real = 0;
	out->state = IDENT_FIRST_SIGHT;
	if (id)
		*id = *out;
	return 1;
}

static __always_inline struct rule *find_cgroup_rule(__u32 gen)
{
	struct rule *found = NULL;
	struct id_key k = { .gen = gen };
	void *rules = sized_map(&cgroup_rules);
	if (!rules)
		return NULL;

	/* Deepest cgroup wins: walk from the root down, keep the last match.
	 * Bounded by cgroup depth, never by the number of rules. */
	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		k.id = bpf_get_current_ancestor_cgroup_id(level);
		if (!k.id)
			break;
		struct rule *r = bpf_map_lookup_elem(rules, &k);
		if (r)
			found = r;
	}
	return found;
}

/* cgroup_rule copies into *out the rule of the current task's deepest
 * cgroup that has one; 0 when none has. A global function: its loop is
 * verified once. Inlined, every level the loop can stop at went on through
 * the rest of fill_cache in the verifier: 15,000 of the 19,700
 * instructions it walked for sock_create. */
__attribute__((noinline)) int cgroup_rule(__u32 gen, struct rule *out)
{
	if (!out)
		return 0;
	struct rule *r = find_cgroup_rule(gen);
	if (!r)
		return 0;
	*out = *r;
	return 1;
}

/* The rule of an executable renamed over an exe rule's path since userspace
 * last resolved it (recorded by the exec hook). */
static __always_inline struct rule *find_learned_rule(struct file_id *exe, __u32 gen)
{
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&learned_count, &zero);
	if (!n || !*n)
		return NULL;
	struct path_key *pk = bpf_map_lookup_elem(&exe_learned, exe);
	if (!pk)
		return NULL;
	struct path_key k = *pk;
	k.gen = gen;
	return sized_lookup(&path_rules, &k);
}

/* The rule of an exe rule's path name an unknown executable was executed
 * by (recorded by the exec hook): it may only tighten (see name_key). */
static __always_inline struct rule *find_named_rule(struct file_id *exe, __u32 gen)
{
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&learned_count, &zero);
	if (!n || !*n)
		return NULL;
	struct exe_key ek = { .id = *exe, .gen = gen };
	if (sized_lookup(&exe_rules, &ek))
		return NULL; /* known identity: its own rule decides */
	__u64 *h = bpf_map_lookup_elem(&exe_named, exe);
	if (!h)
		return NULL;
	struct name_key k = { .hash = *h, .gen = gen };
	return sized_lookup(&name_rules, &k);
}

/* severity orders verdicts: allow < audit < deny. */
static __always_inline int severity(__u8 verdict)
{
	return verdict == VERDICT_DENY ? 2 : verdict == VERDICT_AUDIT ? 1 : 0;
}

/* exe_rule is the rule naming the process's executable: the file it
 * exec'd, else the file behind it (overlayfs' lower file), so a rule for a
 * file covers every mount of it. *judged is set to the identity that
 * matched. */
static __always_inline struct rule *exe_rule(struct proc_ident *id, __u32 gen, struct file_id *judged)
{
	struct exe_key k = { .id = id->exe, .gen = gen };
	struct rule *r = sized_lookup(&exe_rules, &k);
	if (!r)
		r = find_learned_rule(&id->exe, gen);
	if (!r && id->has_real) {
		k.id = id->real;
		r = sized_lookup(&exe_rules, &k);
		if (!r)
			r = find_learned_rule(&id->real, gen);
		if (r)
			*judged = id->real;
	}
	return r;
}

/* fill_cache selects the rule covering the current task under policy word
 * `word` (DESIGN.md "How a connection is judged": executable, else deepest
 * cgroup, else uid, else gid, else the default) and records what the choice
 * depended on. A global function, like decide: the verifier checks its
 * branches once instead of once per path of every caller (inlined, they
 * multiplied the datapath's verification to within 10% of the verifier's
 * 1M-instruction limit). */
__attribute__((noinline)) int fill_cache(__u32 word, struct rule_cache *rc)
{
	if (!rc)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 gen = word & 1;
	struct config *cfg = bpf_map_lookup_elem(&configs, &gen);
	if (!cfg)
		return 0;
	struct proc_ident id = {};
	int has_exe = current_ident(task, &id);
	rc->exe = id.exe;
	rc->has_exe = has_exe;
	rc->by_cgroup = 0;
	rc->by_ids = 0;
	struct rule *r = NULL;
	int by_cgroup = 0; /* rc->r holds the cgroup's rule */
	if (has_exe)
		r = exe_rule(&id, gen, &rc->exe);
	if (!r && cfg->has_cgroup_rules) {
		rc->by_cgroup = 1;
		rc->cgroup = bpf_get_current_cgroup_id();
		by_cgroup = cgroup_rule(gen, &rc->r);
	}
	if (!r && !by_cgroup && (cfg->has_uid_rules || cfg->has_gid_rules)) {
		__u64 uid_gid = bpf_get_current_uid_gid();
		struct id_key k = { .gen = gen };
		rc->by_ids = 1;
		rc->uid_gid = uid_gid;
		if (cfg->has_uid_rules) {
			k.id = (__u32)uid_gid;
			r = sized_lookup(&uid_rules, &k);
		}
		if (!r && cfg->has_gid_rules) {
			k.id = uid_gid >> 32;
			r = sized_lookup(&gid_rules, &k);
		}
	}
	if (r) {
		rc->r = *r;
		rc->is_default = 0;
	} else if (by_cgroup) {
		rc->is_default = 0;
	} else {
		struct rule d = {
			.counter = cfg->default_counter,
			.action = cfg->default_action,
			.unrestricted = cfg->default_action == ACTION_ALLOW,
			.in_open = cfg->default_inbound == ACTION_ALLOW,
		};
		rc->r = d;
		rc->is_default = 1;
	}
	rc->r.audit |= cfg->audit_mode;
	rc->has_named = 0;
	if (has_exe) {
		struct rule *nr = find_named_rule(&id.exe, gen);
		if (nr && nr->counter != rc->r.counter) {
			rc->named = *nr;
			rc->named.audit |= cfg->audit_mode;
			rc->has_named = 1;
		}
	}
	/* A directly run loader is judged as the program it maps next: the
	 * exec hook changes its identity without an exec, so its verdicts are
	 * never memoized (memo_put) until then. */
	rc->pending = id.state == IDENT_LOADER_PENDING;
	rc->active = word;
	rc->valid = 1;
	return 1;
}

/* active_word reads the policy word in force; -1 when none is loaded. */
static __always_inline __s64 active_word(void)
{
	__u32 zero = 0;
	__u32 *activep = bpf_map_lookup_elem(&active, &zero);
	return activep ? *activep : -1;
}

/* rule_of returns the rule the current thread falls under: from its cache
 * when still valid (same policy word, cgroup and ids where they mattered),
 * else selected afresh (into the cache, or into scratch without task
 * storage). NULL when no policy is loaded. */
static __always_inline struct rule_cache *rule_of_word(struct task_struct *task, __u32 word, struct rule_cache *scratch)
{
	struct rule_cache *rc = scratch;
	if (use_task_storage) {
		struct task_state *ts = bpf_task_storage_get(&task_states, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (ts) {
			rc = &ts->cache;
			if (rc->valid && rc->active == word && (!rc->by_cgroup || rc->cgroup == bpf_get_current_cgroup_id()) &&
			    (!rc->by_ids || rc->uid_gid == bpf_get_current_uid_gid()))
				return rc;
		}
	}
	if (!fill_cache(word, rc))
		return NULL;
	return rc;
}

static __always_inline struct rule_cache *rule_of(struct task_struct *task, struct rule_cache *scratch)
{
	__s64 word = active_word();
	if (word < 0)
		return NULL;
	return rule_of_word(task, (__u32)word, scratch);
}

/* memo_slot is this CPU's slot for the current thread; NULL past
 * MEMO_CPUS CPUs (those judge without it). The way is picked by start
 * time, which the hit reads anyway (task->pid is another cache line). */
static __always_inline struct memo *memo_slot(struct task_struct *task)
{
	__u32 cpu = bpf_get_smp_processor_id();
	if (cpu >= MEMO_CPUS)
		return NULL;
	__u32 idx = cpu * MEMO_WAYS + ((__u32)(task->start_time >> 10) & (MEMO_WAYS - 1));
	return bpf_map_lookup_elem(&rule_memo, &idx);
}

#define memo_barrier() asm volatile("" ::: "memory")

/* memo_hit counts an ALLOW the current thread reached under word for this
 * question (family 0: any destination) and returns 1; 0 when the slot does
 * not answer it (or a writer came in between: the caller judges afresh). */
static __always_inline int memo_hit(struct memo *m, struct task_struct *task, __u32 word, __u32 family,
				    const __u8 *addr, __u16 port, __u8 proto)
{
	__u64 state = *(volatile __u64 *)&m->state;
	memo_barrier();
	if ((state & (1ull << 32)) || (__u32)state >= MEMO_PENDING_MAX || m->word != word || m->tag != MEMO_TAG ||
	    m->task != (__u64)task || m->start != task->start_time || m->exec_id != task->self_exec_id)
		return 0;
	if (m->kind == MEMO_DEST) {
		__u64 a[2], b[2];
		__builtin_memcpy(a, addr, 16);
		__builtin_memcpy(b, m->addr, 16);
		if (m->family != family || m->port != port || m->proto != proto || a[0] != b[0] || a[1] != b[1])
			return 0;
	} else if (m->kind != MEMO_ALL) {
		return 0;
	}
	if (m->by_cgroup && m->cgroup != bpf_get_current_cgroup_id())
		return 0;
	if (m->by_ids && m->uid_gid != bpf_get_current_uid_gid())
		return 0;
	/* Counted only if nothing was written since state was read. */
	return __sync_val_compare_and_swap(&m->state, state, state + 1) == state;
}

/* flush_pending moves allows a memo slot counted into counters, unless the
 * counter slot was handed to another rule since (epoch moved: userspace
 * counted them for the rule that went away). */
static __always_inline void flush_pending(__u32 slot, __u64 epoch, __u32 n)
{
	struct counter *c = counter_of(slot);
	if (c && c->epoch == epoch)
		__sync_fetch_and_add(&c->allowed, n);
}

/* rule_in_open: the thread's rule (and the name rule that may tighten it)
 * accepts anyone inbound. Bitwise, not &&: a branch here would give the
 * verifier two states for every path after it (judge sets it last too). */
static __always_inline __u8 rule_in_open(struct rule_cache *rc)
{
	return (rc->r.in_open != 0) & ((rc->has_named == 0) | (rc->named.in_open != 0));
}

/* memo_put records an ALLOW the current thread reached from rc (kind
 * MEMO_ALL: whatever the destination), counted in counter slot `counter`
 * of epoch `epoch`. */
static __always_inline void memo_put(struct memo *m, struct task_struct *task, struct rule_cache *rc, __u8 kind,
				     __u32 counter, __u64 epoch, __u32 family, const __u8 *addr, __u16 port, __u8 proto)
{
	if (rc->pending)
		return; /* a loader about to become its program */
	__u64 start = task->start_time, exec_id = task->self_exec_id;
	__u64 a[2];
	__builtin_memcpy(a, addr, 16);

	/* Take what the slot counted, seq odd until it is in counters. */
	bpf_spin_lock(&m->lock);
	__u64 old = m->state;
	int ours = m->tag == MEMO_TAG; /* else a slot of another layout (an upgrade): nothing pending */
	int busy = ours && ((old >> 32) & 1); /* another writer, preempted before its flush */
	__u32 seq = ours ? old >> 32 : 0, n = 0, oslot = m->counter;
	__u64 oepoch = m->epoch;
	if (!busy) {
		n = ours ? (__u32)old : 0;
		m->state = (__u64)(seq + 1) << 32;
	}
	bpf_spin_unlock(&m->lock);
	if (busy)
		return;
	if (n)
		flush_pending(oslot, oepoch, n);

	bpf_spin_lock(&m->lock);
	memo_barrier();
	m->tag = MEMO_TAG;
	m->word = rc->active;
	m->task = (__u64)task;
	m->start = start;
	m->exec_id = exec_id;
	m->counter = counter;
	m->epoch = epoch;
	m->kind = kind;
	m->by_cgroup = rc->by_cgroup;
	m->by_ids = rc->by_ids;
	m->cgroup = rc->cgroup;
	m->uid_gid = rc->uid_gid;
	m->family = family;
	m->proto = proto;
	m->in_open = rule_in_open(rc);
	m->port = port;
	__builtin_memcpy(m->addr, a, 16);
	memo_barrier();
	m->state = (__u64)(seq + 2) << 32;
	bpf_spin_unlock(&m->lock);
}

static __always_inline __u32 word_mask(int bits)
{
	if (bits <= 0)
		return 0;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(0xffffffffu << (32 - bits));
}

/* match_entry: 1 and *verdict set when entry e takes an outbound attempt. */
static __always_inline int match_entry(struct dest_entry *e, __u16 port, __u8 proto, __u8 *verdict)
{
	if (e->dir == DIR_IN) /* inbound: an "in" entry never judges a connect */
		return 0;
	if (e->proto != PROTO_ANY && e->proto != proto)
		return 0;
	if (port < e->port_lo || port > e->port_hi)
		return 0;
	*verdict = e->verdict;
	return 1;
}

/* match_node tries a destination node's entries, in order, for an
 * outbound attempt: 1 and *verdict set by the first that matches. */
static __always_inline int match_node(struct dest_val *v, __u16 port, __u8 proto, __u8 *verdict)
{
	for (int j = 0; j < MAX_DEST_ENTRIES; j++) {
		if (j >= v->count)
			break;
		if (match_entry(&v->e[j], port, proto, verdict))
			return 1;
	}
	return 0;
}

static __always_inline int match_dests(struct rule *r, __u32 family, const __u8 *addr, __u16 port,
				       __u8 proto, __u8 *verdict)
{
	struct dest_key k = { .rule = r->id, .family = family };
	__u32 a[4];
	__builtin_memcpy(a, addr, 16);
	__u8 n = family == 4 ? r->nlens4 : r->nlens6;
	void *nodes = sized_map(&dests);
	if (!nodes)
		return 0;

	/* A DNS name binding of the rule at this address (struct bind_key): its
	 * name node holds the entries of the host's own specificity, the most
	 * specific there are; when none of them takes the attempt, the rule's
	 * CIDR entries decide. */
	if (r->has_names) {
		struct bind_key bk = { .rule = r->id, .family = family };
		__builtin_memcpy(bk.addr, a, 16);
		void *binds = sized_map(&name_binds);
		struct bind_val *bv = binds ? bpf_map_lookup_elem(binds, &bk) : NULL;
		if (bv && bv->count == 1) {
			/* the node's only entry, kept in the binding */
			if (match_entry(&bv->e, port, proto, verdict))
				return 1;
		} else if (bv) {
			struct dest_key nk = { .rule = r->id, .family = DEST_NAME_NODE };
			*(__u32 *)nk.addr = bv->node;
			struct dest_val *v = bpf_map_lookup_elem(nodes, &nk);
			if (v && match_node(v, port, proto, verdict))
				return 1;
		}
	}

	/* Longest prefix first: the first node found lists every entry that can
	 * match, most specific first. */
	for (int i = 0; i < MAX_PREFIX_LENS; i++) {
		if (i >= n)
			break;
		int plen = family == 4 ? r->lens4[i] : r->lens6[i];
		k.plen = plen;
		__u32 *w = (__u32 *)k.addr;
		w[0] = a[0] & word_mask(plen);
		w[1] = a[1] & word_mask(plen - 32);
		w[2] = a[2] & word_mask(plen - 64);
		w[3] = a[3] & word_mask(plen - 96);
		struct dest_val *v = bpf_map_lookup_elem(nodes, &k);
		if (!v)
			continue;
		return match_node(v, port, proto, verdict);
	}
	return 0;
}

static __always_inline int is_local(__u32 family, const __u8 *addr)
{
	struct local_key k = {
		.prefixlen = 32 + (family == 4 ? 32 : 128),
		.family = bpf_htonl(family),
	};
	__builtin_memcpy(k.addr, addr, 16);
	__u8 *v = bpf_map_lookup_elem(&local_nets, &k);
	return v && *v;
}

/* count counts a verdict in counter slot `slot` and returns the slot's
 * epoch (for memo_put). */
static __always_inline __u64 count(__u32 slot, __u8 verdict)
{
	struct counter *c = counter_of(slot);
	if (!c)
		return 0;
	/* Atomic even per CPU: a preemptible kernel may interleave two hooks. */
	if (verdict == VERDICT_ALLOW)
		__sync_fetch_and_add(&c->allowed, 1);
	else if (verdict == VERDICT_DENY)
		__sync_fetch_and_add(&c->denied, 1);
	else
		__sync_fetch_and_add(&c->audited, 1);
	return c->epoch;
}

/* One destination to judge, passed to decide by pointer. */
struct dest_q {
	__u8 addr[16];
	__u32 family;
	__u16 port;
	__u8 proto;
	__u8 local; /* set by decide: the verdict read local_nets */
};

/* decide judges one destination under rule r (its audit flag already folds
 * in audit mode). A global function: the verifier checks it once, not at
 * every call site (judge calls it twice when a name rule may tighten, and
 * inlining match_dests twice goes over the verifier's limit). */
__attribute__((noinline)) int decide(struct rule *r, struct dest_q *q)
{
	if (!r || !q)
		return VERDICT_ALLOW;
	__u8 verdict = 0;
	if (r->has_dests)
		match_dests(r, q->family, q->addr, q->port, q->proto, &verdict);
	if (!verdict) {
		if (r->action == ACTION_ALLOW) {
			verdict = VERDICT_ALLOW;
		} else if (r->action == ACTION_LOCAL_ONLY) {
			q->local = 1;
			verdict = is_local(q->family, q->addr) ? VERDICT_ALLOW : VERDICT_DENY;
		} else {
			verdict = VERDICT_DENY;
		}
	}
	if (verdict == VERDICT_DENY && r->audit)
		verdict = VERDICT_AUDIT;
	return verdict;
}

/* ---- The guard's questions: is an identity restricted? ---- */

/* An identity given as data: a socket's recorded creator. cgroup levels
 * come from the socket of skb (its creator's cgroup). */
struct who {
	struct file_id exe;
	__u32 has_exe;
	__u32 uid;
	__u32 gid;
};

static __always_inline void who_owner(struct who *w, const struct sock_owner *o)
{
	w->exe = o->exe;
	w->has_exe = o->has_exe;
	w->uid = o->uid;
	w->gid = o->gid;
}

/* rule_free: 1 when rule r lets everything through unjudged by
 * destination (action allow, no deny entries) or only reports (audit). */
static __always_inline int rule_free(const struct rule *r)
{
	return r->unrestricted || r->audit;
}

/* restricted_current: 1 when the current thread's rule (the datapath's
 * cached selection, name rules that may only tighten included) is not
 * unrestricted and the policy enforces. Kernel threads are not. */
static __always_inline int restricted_current(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (kernel_thread(task))
		return 0;
	struct rule_cache scratch;
	struct rule_cache *rc = rule_of(task, &scratch);
	if (!rc)
		return 0;
	if (!rule_free(&rc->r))
		return 1;
	return rc->has_named && !rule_free(&rc->named);
}

/* restricted_owner: the same question for a socket's recorded creator,
 * selected the way fill_cache does (executable, else deepest cgroup of the
 * socket, else uid, else gid, else the default). */
static __always_inline int restricted_owner(struct who *w, struct __sk_buff *skb)
{
	__s64 word = active_word();
	if (word < 0)
		return 0;
	__u32 gen = word & 1;
	struct config *cfg = bpf_map_lookup_elem(&configs, &gen);
	if (!cfg || cfg->audit_mode)
		return 0;
	struct rule *r = NULL;
	if (w->has_exe) {
		struct exe_key k = { .id = w->exe, .gen = gen };
		r = sized_lookup(&exe_rules, &k);
		if (!r)
			r = find_learned_rule(&w->exe, gen);
	}
	if (!r && cfg->has_cgroup_rules) {
		struct id_key k = { .gen = gen };
		void *rules = sized_map(&cgroup_rules);
		for (int level = 0; rules && level < MAX_CGROUP_DEPTH; level++) {
			k.id = bpf_skb_ancestor_cgroup_id(skb, level);
			if (!k.id)
				break;
			struct rule *c = bpf_map_lookup_elem(rules, &k);
			if (c)
				r = c;
		}
	}
	if (!r && cfg->has_uid_rules) {
		struct id_key k = { .id = w->uid, .gen = gen };
		r = sized_lookup(&uid_rules, &k);
	}
	if (!r && cfg->has_gid_rules) {
		struct id_key k = { .id = w->gid, .gen = gen };
		r = sized_lookup(&gid_rules, &k);
	}
	if (r)
		return !rule_free(r);
	return cfg->default_action != ACTION_ALLOW;
}
