// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* exewall datapath: judges every connect() and unconnected sendmsg() of the
 * processes in the attached cgroup by the executable they run. */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "kernel_types.h"
#include "exewall.h"

/* IP protocol numbers (linux/in.h drags in arch headers we do not need). */
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_UDPLITE 136
#define IPPROTO_MPTCP 262

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#include "maps.h"

static __always_inline __u8 proto_of(struct bpf_sock_addr *ctx)
{
	switch (ctx->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_MPTCP:
		return PROTO_TCP;
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
		return PROTO_UDP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return PROTO_ICMP;
	}
	return PROTO_ANY;
}

/* bpf2go emits Go types only for types in BTF; these reach BTF this way. */
const struct event *unused_event __attribute__((unused));
const struct sock_rec *unused_sock_rec __attribute__((unused));
const struct name_key *unused_name_key __attribute__((unused));

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
	struct file *exe = task->mm->exe_file;
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

	/* Deepest cgroup wins: walk from the root down, keep the last match.
	 * Bounded by cgroup depth, never by the number of rules. */
	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		k.id = bpf_get_current_ancestor_cgroup_id(level);
		if (!k.id)
			break;
		struct rule *r = bpf_map_lookup_elem(&cgroup_rules, &k);
		if (r)
			found = r;
	}
	return found;
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
	return bpf_map_lookup_elem(&path_rules, &k);
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
	if (bpf_map_lookup_elem(&exe_rules, &ek))
		return NULL; /* known identity: its own rule decides */
	__u64 *h = bpf_map_lookup_elem(&exe_named, exe);
	if (!h)
		return NULL;
	struct name_key k = { .hash = *h, .gen = gen };
	return bpf_map_lookup_elem(&name_rules, &k);
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
	struct rule *r = bpf_map_lookup_elem(&exe_rules, &k);
	if (!r)
		r = find_learned_rule(&id->exe, gen);
	if (!r && id->has_real) {
		k.id = id->real;
		r = bpf_map_lookup_elem(&exe_rules, &k);
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
 * depended on. */
static __always_inline int fill_cache(struct task_struct *task, __u32 word, struct rule_cache *rc)
{
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
	if (has_exe)
		r = exe_rule(&id, gen, &rc->exe);
	if (!r && cfg->has_cgroup_rules) {
		rc->by_cgroup = 1;
		rc->cgroup = bpf_get_current_cgroup_id();
		r = find_cgroup_rule(gen);
	}
	if (!r && (cfg->has_uid_rules || cfg->has_gid_rules)) {
		__u64 uid_gid = bpf_get_current_uid_gid();
		struct id_key k = { .gen = gen };
		rc->by_ids = 1;
		rc->uid_gid = uid_gid;
		if (cfg->has_uid_rules) {
			k.id = (__u32)uid_gid;
			r = bpf_map_lookup_elem(&uid_rules, &k);
		}
		if (!r && cfg->has_gid_rules) {
			k.id = uid_gid >> 32;
			r = bpf_map_lookup_elem(&gid_rules, &k);
		}
	}
	if (r) {
		rc->r = *r;
		rc->is_default = 0;
	} else {
		struct rule d = {
			.counter = cfg->default_counter,
			.action = cfg->default_action,
			.unrestricted = cfg->default_action == ACTION_ALLOW,
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
	rc->active = word;
	rc->valid = 1;
	return 1;
}

/* rule_of returns the rule the current thread falls under: from its cache
 * when still valid (same policy word, cgroup and ids where they mattered),
 * else selected afresh (into the cache, or into scratch without task
 * storage). NULL when no policy is loaded. */
static __always_inline struct rule_cache *rule_of(struct task_struct *task, struct rule_cache *scratch)
{
	__u32 zero = 0;
	__u32 *activep = bpf_map_lookup_elem(&active, &zero);
	if (!activep)
		return NULL;
	__u32 word = *activep;
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
	if (!fill_cache(task, word, rc))
		return NULL;
	return rc;
}

static __always_inline __u32 word_mask(int bits)
{
	if (bits <= 0)
		return 0;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(0xffffffffu << (32 - bits));
}

static __always_inline int match_dests(struct rule *r, __u32 family, const __u8 *addr, __u16 port,
				       __u8 proto, __u8 *verdict)
{
	struct dest_key k = { .rule = r->id, .family = family };
	__u32 a[4];
	__builtin_memcpy(a, addr, 16);
	__u8 n = family == 4 ? r->nlens4 : r->nlens6;

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
		struct dest_val *v = bpf_map_lookup_elem(&dests, &k);
		if (!v)
			continue;
		for (int j = 0; j < MAX_DEST_ENTRIES; j++) {
			if (j >= v->count)
				break;
			struct dest_entry *e = &v->e[j];
			if (e->dir == DIR_IN) /* inbound: an "in" entry never judges a connect */
				continue;
			if (e->proto != PROTO_ANY && e->proto != proto)
				continue;
			if (port < e->port_lo || port > e->port_hi)
				continue;
			*verdict = e->verdict;
			return 1;
		}
		return 0;
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

static __always_inline void count(__u32 slot, __u8 verdict)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &slot);
	if (!c)
		return;
	/* Atomic even per CPU: a preemptible kernel may interleave two hooks. */
	if (verdict == VERDICT_ALLOW)
		__sync_fetch_and_add(&c->allowed, 1);
	else if (verdict == VERDICT_DENY)
		__sync_fetch_and_add(&c->denied, 1);
	else
		__sync_fetch_and_add(&c->audited, 1);
}

static __always_inline void lose(__u64 n)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);
	if (lost)
		__sync_fetch_and_add(lost, n);
}

static __always_inline void report(struct rule_cache *rc, struct rule *r, __u8 verdict, __u32 family, const __u8 *addr, __u16 port,
				   __u8 proto, __u8 hook, __u32 sk_family)
{
	__u32 slot = r->counter;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_boot_ns();
	struct gate_key gk = {
		.pid = pid_tgid >> 32,
		.counter = slot,
		.dport = port,
		.family = family,
		.proto = proto,
		.verdict = verdict,
		.hook = hook,
		.sk_family = sk_family,
	};
	__builtin_memcpy(gk.daddr, addr, 16);

	__u64 carried = 0;
	struct gate *g = bpf_map_lookup_elem(&event_gates, &gk);
	if (g) {
		if (now - g->start < EVENT_WINDOW_NS) {
			__sync_fetch_and_add(&g->suppressed, 1);
			return;
		}
		/* A new window: this event carries the attempts held back in the
		 * last one. Subtracting what was read keeps concurrent increments. */
		carried = g->suppressed;
		__sync_fetch_and_add(&g->suppressed, -carried);
		g->start = now;
	}

	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		lose(1 + carried);
		return;
	}
	__u64 uid_gid = bpf_get_current_uid_gid();
	ev->boot_ns = now;
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->uid = (__u32)uid_gid;
	ev->gid = uid_gid >> 32;
	ev->counter = slot;
	ev->rule = (r == &rc->r && rc->is_default) ? 0 : r->id;
	ev->exe = rc->exe;
	__builtin_memcpy(ev->daddr, addr, 16);
	ev->dport = port;
	ev->family = family;
	ev->proto = proto;
	ev->verdict = verdict;
	ev->hook = hook;
	ev->has_exe = rc->has_exe;
	ev->_pad = 0;
	ev->count = 1 + carried;
	ev->_pad2 = 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	if (!g) {
		struct gate ng = { .start = now };
		ng.ev = *ev;
		ng.ev.count = 0;
		bpf_map_update_elem(&event_gates, &gk, &ng, BPF_NOEXIST);
	}
	bpf_ringbuf_submit(ev, 0);
}

/* One destination to judge, passed to decide by pointer. */
struct dest_q {
	__u8 addr[16];
	__u32 family;
	__u16 port;
	__u8 proto;
	__u8 _pad;
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
		if (r->action == ACTION_ALLOW)
			verdict = VERDICT_ALLOW;
		else if (r->action == ACTION_LOCAL_ONLY && is_local(q->family, q->addr))
			verdict = VERDICT_ALLOW;
		else
			verdict = VERDICT_DENY;
	}
	if (verdict == VERDICT_DENY && r->audit)
		verdict = VERDICT_AUDIT;
	return verdict;
}

/* judge returns 1 to let the call proceed, 0 to fail it with EPERM. The
 * common case, a thread whose rule (or the default) allows everything, costs
 * the policy word, one task storage lookup and the counter. */
static __always_inline int judge(struct bpf_sock_addr *ctx, __u32 family, const __u8 *addr,
				 __u16 port, __u8 hook)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (!task->mm)
		return 1; /* kernel thread: no user memory, always allowed */
	struct rule_cache scratch;
	struct rule_cache *rc = rule_of(task, &scratch);
	if (!rc)
		return 1;
	struct rule *r = &rc->r;
	if (r->action == ACTION_ALLOW && !r->has_dests && !rc->has_named) {
		count(r->counter, VERDICT_ALLOW);
		return 1;
	}
	__u8 proto = proto_of(ctx);
	struct dest_q q = { .family = family, .port = port, .proto = proto };
	__builtin_memcpy(q.addr, addr, 16);
	__u8 verdict = decide(r, &q);
	if (rc->has_named) {
		/* The rule of a name this executable was run by may only tighten. */
		__u8 nv = decide(&rc->named, &q);
		if (severity(nv) > severity(verdict)) {
			verdict = nv;
			r = &rc->named;
		}
	}

	count(r->counter, verdict);
	if (verdict == VERDICT_ALLOW)
		return 1;
	report(rc, r, verdict, family, addr, port, proto, hook, ctx->family);
	return verdict == VERDICT_AUDIT;
}

static __always_inline int judge4(struct bpf_sock_addr *ctx, __u8 hook)
{
	__u8 addr[16] = {};
	__u32 ip = ctx->user_ip4;
	__builtin_memcpy(addr, &ip, 4);
	return judge(ctx, 4, addr, bpf_ntohs((__u16)ctx->user_port), hook);
}

static __always_inline int judge6(struct bpf_sock_addr *ctx, __u8 hook)
{
	__u32 a[4];
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

	/* ::ffff:a.b.c.d is an IPv4 destination, whichever hook it came by. */
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
		__u8 addr4[16] = {};
		__builtin_memcpy(addr4, &a[3], 4);
		return judge(ctx, 4, addr4, port, hook);
	}
	return judge(ctx, 6, (const __u8 *)a, port, hook);
}

SEC("cgroup/connect4")
int exewall_connect4(struct bpf_sock_addr *ctx) { return judge4(ctx, HOOK_CONNECT4); }

SEC("cgroup/connect6")
int exewall_connect6(struct bpf_sock_addr *ctx) { return judge6(ctx, HOOK_CONNECT6); }

SEC("cgroup/sendmsg4")
int exewall_sendmsg4(struct bpf_sock_addr *ctx) { return judge4(ctx, HOOK_SENDMSG4); }

SEC("cgroup/sendmsg6")
int exewall_sendmsg6(struct bpf_sock_addr *ctx) { return judge6(ctx, HOOK_SENDMSG6); }

#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* sock_create closes what connect/sendmsg never see: raw sockets, ping
 * sockets (their unconnected sends skip the sendmsg hooks), SCTP, MPTCP and
 * other protocols are created only by processes whose rule is unrestricted
 * (action allow, no deny entries). TCP and UDP sockets are always created
 * and judged per destination; their creator is recorded so held sockets can
 * be re-judged (and destroyed) when a rule tightens. */
SEC("cgroup/sock_create")
int exewall_sock_create(struct bpf_sock *sk)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (!task->mm)
		return 1;
	struct rule_cache scratch;
	struct rule_cache *rc = rule_of(task, &scratch);
	if (!rc)
		return 1;

	/* TCP and UDP, nearly every socket(): record the creator and go. */
	__u32 type = sk->type, protocol = sk->protocol;
	if ((type == SOCK_STREAM && protocol == IPPROTO_TCP) || (type == SOCK_DGRAM && protocol == IPPROTO_UDP)) {
		struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (o) {
			__u64 uid_gid = bpf_get_current_uid_gid();
			o->exe = rc->exe;
			o->has_exe = rc->has_exe;
			o->uid = (__u32)uid_gid;
			o->gid = uid_gid >> 32;
			o->cgroup = bpf_get_current_cgroup_id();
		}
		return 1;
	}

	struct rule *r = &rc->r;
	if (rc->r.unrestricted && rc->has_named && !rc->named.unrestricted)
		r = &rc->named; /* a name rule may only tighten */
	if (r->unrestricted)
		return 1;
	__u8 verdict = r->audit ? VERDICT_AUDIT : VERDICT_DENY;
	__u8 proto = (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) ? PROTO_ICMP : PROTO_RAW;
	__u8 addr[16] = {};
	count(r->counter, verdict);
	report(rc, r, verdict, sk->family == 10 ? 6 : 4, addr, 0, proto, HOOK_SOCK_CREATE, sk->family);
	return verdict == VERDICT_AUDIT;
}
