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

#include "verdict.h"
#include "dns.h" /* names (issue 15) */
#include "inbound.h"

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
const struct dns_conf *unused_dns_conf __attribute__((unused));
const struct dns_server *unused_dns_server __attribute__((unused));
/* The sized maps' types (maps.h gives their inner hashes sizes only). */
const struct exe_key *unused_exe_key __attribute__((unused));
const struct id_key *unused_id_key __attribute__((unused));
const struct path_key *unused_path_key __attribute__((unused));
const struct rule *unused_rule __attribute__((unused));
const struct dest_key *unused_dest_key __attribute__((unused));
const struct dest_val *unused_dest_val __attribute__((unused));
const struct rule_name *unused_rule_name __attribute__((unused));
const struct counter *unused_counter __attribute__((unused));
const struct bind_key *unused_bind_key __attribute__((unused));
const struct bind_val *unused_bind_val __attribute__((unused));
const struct dns_orig *unused_dns_orig __attribute__((unused));

static __always_inline void lose(__u64 n)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);
	if (lost)
		__sync_fetch_and_add(lost, n);
}

/* report's meta: the verdict, the hook, the socket's family and whether the
 * name rule (rc->named) decided rather than rc->r, packed so that report
 * stays within a global function's five arguments. */
#define REPORT_META(verdict, hook, sk_family, named) \
	((__u32)(verdict) | (__u32)(hook) << 8 | (__u32)(sk_family) << 16 | (__u32)(named) << 24)

/* report emits a violation event for q under rc's rule, one per window per
 * (pid, rule, destination) (event_gates). A global function, verified once:
 * inlined, its frame (the gate, 112 bytes) stacked with fill_cache's went
 * over the verifier's 512-byte limit. */
__attribute__((noinline)) int report(struct rule_cache *rc, struct dest_q *q, __u32 meta)
{
	if (!rc || !q)
		return 0;
	/* Every field goes to the stack as soon as it is known: few values
	 * live across the helper calls, so few spills (the frame is what
	 * limits this function, see above). */
	struct gate ng = {};
	struct event *ev = &ng.ev;
	struct rule *r = (meta >> 24) ? &rc->named : &rc->r;
	ev->counter = r->counter;
	ev->rule = (r == &rc->r && rc->is_default) ? 0 : r->id;
	ev->exe = rc->exe;
	ev->has_exe = rc->has_exe;
	__builtin_memcpy(ev->daddr, q->addr, 16);
	ev->dport = q->port;
	ev->family = q->family;
	ev->proto = q->proto;
	ev->verdict = meta;
	ev->hook = meta >> 8;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->boot_ns = ng.start = bpf_ktime_get_boot_ns();

	struct gate_key gk = {
		.pid = ev->pid,
		.counter = ev->counter,
		.dport = ev->dport,
		.family = ev->family,
		.proto = ev->proto,
		.verdict = ev->verdict,
		.hook = ev->hook,
		.sk_family = (meta >> 16) & 0xff,
	};
	__builtin_memcpy(gk.daddr, ev->daddr, 16);
	__u64 carried = 0;
	struct gate *g = bpf_map_lookup_elem(&event_gates, &gk);
	if (g) {
		if (ng.start - g->start < EVENT_WINDOW_NS) {
			__sync_fetch_and_add(&g->suppressed, 1);
			return 0;
		}
		/* A new window: this event carries the attempts held back in the
		 * last one. Subtracting what was read keeps concurrent increments. */
		carried = g->suppressed;
		__sync_fetch_and_add(&g->suppressed, -carried);
		g->start = ng.start;
	}

	__u64 uid_gid = bpf_get_current_uid_gid();
	ev->uid = (__u32)uid_gid;
	ev->gid = uid_gid >> 32;
	ev->count = 1 + carried;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	/* The ring buffer copies the event: the same bytes, with count 0,
	 * are the new gate's copy for the daemon's sweep. */
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), 0)) {
		lose(ev->count);
		return 0;
	}
	if (!g) {
		ev->count = 0;
		bpf_map_update_elem(&event_gates, &gk, &ng, BPF_NOEXIST);
	}
	return 0;
}

/* steer_dns4 is dns_steer of q for the IPv4 hooks. A global function, verified
 * once instead of along every path of judge that reaches it: inlined, it was
 * ~15% of the datapath's verification (435 ms instead of 502-521 on a 2-CPU
 * EPYC VM, most of a fresh daemon's start). Two of them because the hook
 * must be a constant: an IPv4 hook's context has no user_ip6 to read. */
__attribute__((noinline)) int steer_dns4(struct bpf_sock_addr *ctx, struct dest_q *q, __u32 rule)
{
	if (!ctx || !q)
		return DNS_PASS;
	return dns_steer(ctx, 0, q->family, q->addr, q->port, q->proto, rule);
}

/* steer_dns6 is steer_dns4 for the IPv6 hooks (their context's fields). */
__attribute__((noinline)) int steer_dns6(struct bpf_sock_addr *ctx, struct dest_q *q, __u32 rule)
{
	if (!ctx || !q)
		return DNS_PASS;
	return dns_steer(ctx, 1, q->family, q->addr, q->port, q->proto, rule);
}

/* memo_record remembers in this CPU's slot an allow the current thread
 * reached from rc (kind MEMO_ALL: any destination; MEMO_DEST: q's), counted
 * in counter slot `counter` of epoch `epoch`. A name rule's verdicts change
 * with its bindings, which do not change the policy word, and its queries
 * (all queries while learning) must reach dns_steer: never memoized; nor
 * are destinations judged by local_nets, which change without a new word.
 * A global function that finds the slot again: inlined, the slot pointer
 * judge kept for it (NULL or not) doubled the verifier's states along
 * every path after the memo's check. The hit stays inline: a call there
 * costs the allowed path ~15 ns (returns are expensive with SRSO's
 * mitigation on AMD). */
__attribute__((noinline)) int memo_record(struct rule_cache *rc, struct dest_q *q, __u32 counter, __u64 epoch, __u32 kind)
{
	if (!rc || !q)
		return 0;
	if (rc->r.has_names || (rc->has_named && rc->named.has_names) || (kind == MEMO_DEST && q->local) ||
	    dns_learning())
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct memo *m = memo_slot(task);
	if (!m)
		return 0;
	if (kind == MEMO_ALL)
		memo_put(m, task, rc, MEMO_ALL, counter, epoch, 0, q->addr, 0, 0);
	else
		memo_put(m, task, rc, MEMO_DEST, counter, epoch, q->family, q->addr, q->port, q->proto);
	return 0;
}

/* judge returns 1 to let the call proceed, 0 to fail it with EPERM. The
 * common cases, a thread whose rule (or the default) allows everything, or
 * that asks again about the destination it was just allowed, cost the
 * policy word and this CPU's memo slot (which counts the allow itself).
 * q holds the destination (q->local is decide's to set).
 * *in_open is set when the thread's rule accepts anyone inbound (its UDP
 * peers need no note), just before returning; left as it is when unknown. */
static __always_inline int judge(struct bpf_sock_addr *ctx, struct dest_q *q, __u8 hook, __u8 *in_open)
{
	__s64 word = active_word();
	if (word < 0)
		return 1;
	struct task_struct *task = bpf_get_current_task_btf();
	if (kernel_thread(task))
		return 1; /* never memoized */
	struct memo *m = memo_slot(task);
	if (m && memo_hit(m, task, word, q->family, q->addr, q->port, q->proto)) {
		*in_open = m->in_open;
		return 1;
	}
	struct rule_cache scratch;
	struct rule_cache *rc = rule_of_word(task, word, &scratch);
	if (!rc)
		return 1;
	struct rule *r = &rc->r;
	/* names (issue 15): a rule with name entries has its DNS sent to the
	 * forwarder (bpf/dns.h); hook is a constant here. */
	int learning = !r->has_names && dns_learning();
	if (r->has_names || learning) {
		__u32 rule = learning ? DNS_NO_RULE : r->counter;
		int s = hook == HOOK_CONNECT6 || hook == HOOK_SENDMSG6 ? steer_dns6(ctx, q, rule) : steer_dns4(ctx, q, rule);
		if (s != DNS_PASS) {
			count(r->counter, s == DNS_STEERED ? VERDICT_ALLOW : VERDICT_DENY);
			*in_open = rule_in_open(rc);
			return s == DNS_STEERED;
		}
	}
	if (r->action == ACTION_ALLOW && !r->has_dests && !rc->has_named) {
		__u64 epoch = count(r->counter, VERDICT_ALLOW);
		memo_record(rc, q, r->counter, epoch, MEMO_ALL);
		*in_open = rule_in_open(rc);
		return 1;
	}
	__u8 verdict = decide(r, q), named = 0;
	if (rc->has_named) {
		/* The rule of a name this executable was run by may only tighten. */
		__u8 nv = decide(&rc->named, q);
		if (severity(nv) > severity(verdict)) {
			verdict = nv;
			r = &rc->named;
			named = 1;
		}
	}

	__u64 epoch = count(r->counter, verdict);
	if (verdict == VERDICT_ALLOW) {
		if (!q->local) /* (checked again there: not worth a call here) */
			memo_record(rc, q, r->counter, epoch, MEMO_DEST);
		*in_open = rule_in_open(rc);
		return 1;
	}
	report(rc, q, REPORT_META(verdict, hook, ctx->family, named));
	*in_open = rule_in_open(rc);
	return verdict == VERDICT_AUDIT;
}

static __always_inline int judge4(struct bpf_sock_addr *ctx, __u8 hook, __u8 *in_open)
{
	struct dest_q q = { .family = 4, .port = bpf_ntohs((__u16)ctx->user_port), .proto = proto_of(ctx) };
	__u32 ip = ctx->user_ip4;
	__builtin_memcpy(q.addr, &ip, 4);
	return judge(ctx, &q, hook, in_open);
}

static __always_inline int judge6(struct bpf_sock_addr *ctx, __u8 hook, __u8 *in_open)
{
	__u32 a[4];
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

	/* ::ffff:a.b.c.d is an IPv4 destination, whichever hook it came by. */
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
		struct dest_q q4 = { .family = 4, .port = port, .proto = proto_of(ctx) };
		__builtin_memcpy(q4.addr, &a[3], 4);
		return judge(ctx, &q4, hook, in_open);
	}
	struct dest_q q6 = { .family = 6, .port = port, .proto = proto_of(ctx) };
	__builtin_memcpy(q6.addr, a, 16);
	return judge(ctx, &q6, hook, in_open);
}

SEC("cgroup/connect4")
int exewall_connect4(struct bpf_sock_addr *ctx)
{
	__u8 in_open;
	return judge4(ctx, HOOK_CONNECT4, &in_open);
}

SEC("cgroup/connect6")
int exewall_connect6(struct bpf_sock_addr *ctx)
{
	__u8 in_open;
	return judge6(ctx, HOOK_CONNECT6, &in_open);
}

/* An allowed unconnected UDP send: the peer's datagrams are replies from
 * then on, for the inbound hooks (the socket's last IN_PEERS peers). Read
 * after judge, so a query steered to the forwarder records the forwarder,
 * the peer the reply comes from. Only sockets with an inbound record (made
 * while the policy restricts inbound) have peers noted, and only when the
 * sending thread's rule does not accept anyone inbound (a socket created by
 * a restricted program and sent from by an open one, after fd passing, gets
 * its replies judged as inbound: refused rather than let in). Here rather
 * than in a program of the inbound hooks' own: that second program on every
 * UDP send cost more than the verdict. */
static __always_inline void note_peer(struct bpf_sock_addr *ctx, __u8 family, const __u32 *a)
{
	if (ctx->protocol != IPPROTO_UDP)
		return;
	struct in_sock *s = bpf_sk_storage_get(&in_socks, ctx->sk, 0, 0);
	if (!s)
		return;
	/* The creator's rule accepts anyone (found at the socket's first
	 * datagram under this policy): replies need no record. */
	__s64 word = active_word();
	if (s->open && s->valid && s->active == word)
		return;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	/* The newest first: a program mostly sends to one peer at a time. */
	__u8 newest = s->next_peer - 1;
	for (int k = 0; k < IN_PEERS; k++) {
		struct in_peer *p = &s->peers[(newest - k) & (IN_PEERS - 1)];
		__u32 *pa = (__u32 *)p->addr;
		if (p->family == family && p->port == port && pa[0] == a[0] && pa[1] == a[1] && pa[2] == a[2] && pa[3] == a[3])
			return;
	}
	struct in_peer *p = &s->peers[s->next_peer & (IN_PEERS - 1)];
	s->next_peer++;
	__builtin_memcpy(p->addr, a, 16);
	p->port = port;
	p->family = family;
}

/* Global functions: verified once, apart from judge's paths. */
__attribute__((noinline)) int note_peer4(struct bpf_sock_addr *ctx)
{
	if (!ctx)
		return 0;
	__u32 a[4] = { ctx->user_ip4, 0, 0, 0 };
	note_peer(ctx, 4, a);
	return 0;
}

__attribute__((noinline)) int note_peer6(struct bpf_sock_addr *ctx)
{
	if (!ctx)
		return 0;
	__u32 a[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
		__u32 a4[4] = { a[3], 0, 0, 0 };
		note_peer(ctx, 4, a4);
	} else {
		note_peer(ctx, 6, a);
	}
	return 0;
}

SEC("cgroup/sendmsg4")
int exewall_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u8 in_open = 0;
	if (!judge4(ctx, HOOK_SENDMSG4, &in_open))
		return 0;
	if (!in_open)
		note_peer4(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int exewall_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u8 in_open = 0;
	if (!judge6(ctx, HOOK_SENDMSG6, &in_open))
		return 0;
	if (!in_open)
		note_peer6(ctx);
	return 1;
}

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
	if (kernel_thread(task))
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
	__u8 named = 0;
	if (rc->r.unrestricted && rc->has_named && !rc->named.unrestricted) {
		r = &rc->named; /* a name rule may only tighten */
		named = 1;
	}
	if (r->unrestricted)
		return 1;
	__u8 verdict = r->audit ? VERDICT_AUDIT : VERDICT_DENY;
	struct dest_q q = {
		.family = sk->family == 10 ? 6 : 4,
		.proto = (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) ? PROTO_ICMP : PROTO_RAW,
	};
	count(r->counter, verdict);
	report(rc, &q, REPORT_META(verdict, HOOK_SOCK_CREATE, sk->family, named));
	return verdict == VERDICT_AUDIT;
}
