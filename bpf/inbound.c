// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Inbound (DESIGN.md "How a connection is judged", rule 5): a rule that
 * selects a program also governs what it accepts. cgroup_skb/ingress runs in
 * sk_filter, before a TCP listener answers a SYN and before a datagram is
 * queued to a UDP socket, so a refused peer gets no SYN-ACK (nothing, never
 * data) and the program never reads its datagrams.
 *
 * Judged: packets to TCP listeners and to unconnected UDP sockets, by the
 * rule of the socket's creator (recorded at sock_create; the current task of
 * an ingress program is whoever the softirq interrupted), the peer as the
 * address and the socket's local port as the port. Not judged: established
 * TCP sockets (accepted ones were judged at their SYN; the sweep re-judges
 * them when a rule tightens), connected UDP sockets (the kernel delivers
 * only their peer's datagrams), datagrams from a peer the socket sent to
 * (replies), sockets with no creator record.
 *
 * Cost: a packet to any other socket leaves before the first lookup; one to
 * a socket whose creator accepts anyone costs one socket storage lookup
 * (the answer is kept per socket and policy word); a restricted socket's
 * packet from a peer it accepted a moment ago costs a comparison with the
 * last IN_SEEN accepted peers. The daemon attaches these programs only
 * while the policy in force restricts inbound for someone. */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kernel_types.h"
#include "maps.h"
#include "verdict.h"
#include "inbound.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define TCP_LISTEN 10
#define TCP_CLOSE 7
#define TCP_FLAG_SYN 0x02

const struct in_sock *unused_in_sock __attribute__((unused));

/* sock_create records the creator's pid and comm beside the datapath's
 * sock_owners record (exe, cgroup, uid, gid), for inbound events. */
SEC("cgroup/sock_create")
int exewall_in_create(struct bpf_sock *sk)
{
	if (!((sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP) || (sk->type == SOCK_DGRAM && sk->protocol == IPPROTO_UDP)))
		return 1;
	struct in_sock *s = bpf_sk_storage_get(&in_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (s) {
		s->pid = bpf_get_current_pid_tgid() >> 32;
		s->uid = (__u32)bpf_get_current_uid_gid();
		bpf_get_current_comm(s->comm, sizeof(s->comm));
	}
	return 1;
}

/* owner_rule: the rule of a socket's recorded creator, selected as
 * verdict.h's restricted_owner does (executable, else deepest cgroup of the
 * socket, else uid, else gid); NULL for the default. */
static __always_inline struct rule *owner_rule(struct config *cfg, __u32 gen, struct who *w, struct __sk_buff *skb)
{
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
	return r;
}

/* select_in fills s->r with the rule of the socket's creator under policy
 * word `word` (owner_rule), else default_inbound. */
static __always_inline int select_in(struct __sk_buff *skb, struct sock_owner *o, struct in_sock *s, __u32 word)
{
	__u32 gen = word & 1;
	struct config *cfg = bpf_map_lookup_elem(&configs, &gen);
	if (!cfg)
		return 0;
	struct who w = {};
	who_owner(&w, o);
	struct rule *r = owner_rule(cfg, gen, &w, skb);
	if (r) {
		s->r = *r;
		s->is_default = 0;
	} else {
		struct rule d = {
			.counter = cfg->default_counter,
			.action = cfg->default_inbound,
			.in_open = cfg->default_inbound == ACTION_ALLOW,
		};
		s->r = d;
		s->is_default = 1;
	}
	s->r.audit |= cfg->audit_mode;
	s->open = s->r.in_open;
	s->active = word;
	s->valid = 1;
	return 1;
}

/* One inbound attempt, passed to decide_in by pointer. */
struct in_q {
	__u8 addr[16]; /* the peer */
	__u32 family;
	__u16 port;    /* the local port */
	__u8 proto;
	__u8 _pad;
};

/* decide_in: the rule's entries covering "in" (most specific first, as
 * compiled for outbound), else its action; IN_LOCAL is or'ed in when the
 * verdict came from local_nets (which changes without a new policy word).
 * A global function: verified once. */
#define IN_LOCAL 0x80
__attribute__((noinline)) int decide_in(struct rule *r, struct in_q *q)
{
	if (!r || !q)
		return VERDICT_ALLOW;
	__u8 verdict = 0, local = 0;
	__u32 family = q->family;
	void *nodes = r->has_dests ? sized_map(&dests) : NULL;
	if (nodes) {
		struct dest_key k = { .rule = r->id, .family = family };
		__u8 n = family == 4 ? r->nlens4 : r->nlens6;
		for (int i = 0; i < MAX_PREFIX_LENS; i++) {
			if (i >= n)
				break;
			int plen = family == 4 ? r->lens4[i & (MAX_PREFIX_LENS - 1)] : r->lens6[i & (MAX_PREFIX_LENS - 1)];
			k.plen = plen;
			__u32 *w = (__u32 *)k.addr, *a = (__u32 *)q->addr;
			w[0] = a[0] & word_mask(plen);
			w[1] = a[1] & word_mask(plen - 32);
			w[2] = a[2] & word_mask(plen - 64);
			w[3] = a[3] & word_mask(plen - 96);
			struct dest_val *v = bpf_map_lookup_elem(nodes, &k);
			if (!v)
				continue;
			for (int j = 0; j < MAX_DEST_ENTRIES; j++) {
				if (j >= v->count)
					break;
				struct dest_entry *e = &v->e[j];
				if (e->dir == DIR_OUT)
					continue;
				if (e->proto != PROTO_ANY && e->proto != q->proto)
					continue;
				if (q->port < e->port_lo || q->port > e->port_hi)
					continue;
				verdict = e->verdict;
				break;
			}
			break;
		}
	}
	if (!verdict) {
		if (r->action == ACTION_ALLOW) {
			verdict = VERDICT_ALLOW;
		} else if (r->action == ACTION_LOCAL_ONLY) {
			struct local_key lk = { .prefixlen = 32 + (family == 4 ? 32 : 128), .family = bpf_htonl(family) };
			__builtin_memcpy(lk.addr, q->addr, 16);
			__u8 *l = bpf_map_lookup_elem(&local_nets, &lk);
			verdict = l && *l ? VERDICT_ALLOW : VERDICT_DENY;
			local = IN_LOCAL;
		} else {
			verdict = VERDICT_DENY;
		}
	}
	if (verdict == VERDICT_DENY && r->audit)
		verdict = VERDICT_AUDIT;
	return verdict | local;
}

static __always_inline int is_reply(struct in_sock *s, struct in_q *q, __u16 sport)
{
	__u32 *a = (__u32 *)q->addr;
	for (int i = 0; i < IN_PEERS; i++) {
		struct in_peer *p = &s->peers[i];
		__u32 *pa = (__u32 *)p->addr;
		if (p->family == q->family && p->port == sport && pa[0] == a[0] && pa[1] == a[1] && pa[2] == a[2] && pa[3] == a[3])
			return 1;
	}
	return 0;
}

/* seen_hit: the peer was accepted under this word a moment ago. */
static __always_inline int seen_hit(struct in_sock *s, struct in_q *q, __u32 word)
{
	__u32 seq = *(volatile __u32 *)&s->seen_seq;
	if (seq & 1)
		return 0;
	asm volatile("" ::: "memory");
	__u64 a[2];
	__builtin_memcpy(a, q->addr, 16);
	int hit = 0;
	for (int i = 0; i < IN_SEEN; i++) {
		struct in_seen *e = &s->seen[i];
		__u64 b[2];
		__builtin_memcpy(b, e->addr, 16);
		if (e->word == word + 1 && e->family == q->family && a[0] == b[0] && a[1] == b[1]) {
			hit = 1;
			break;
		}
	}
	asm volatile("" ::: "memory");
	return hit && *(volatile __u32 *)&s->seen_seq == seq;
}

/* seen_put records an accepted peer (only verdicts that depend on nothing
 * but the policy word: not local-only ones, not name entries' bindings). */
static __always_inline void seen_put(struct in_sock *s, struct in_q *q, __u32 word)
{
	bpf_spin_lock(&s->lock);
	s->seen_seq++;
	asm volatile("" ::: "memory");
	struct in_seen *e = &s->seen[s->seen_next & (IN_SEEN - 1)];
	s->seen_next++;
	e->word = word + 1;
	e->family = q->family;
	__builtin_memcpy(e->addr, q->addr, 16);
	asm volatile("" ::: "memory");
	s->seen_seq++;
	bpf_spin_unlock(&s->lock);
}

/* report_in: one event per (creator, rule, local port, protocol, family)
 * and window, whatever the peer: a SYN flood from spoofed addresses folds
 * into one event that counts it (the first peer is the one named). */
static __always_inline void report_in(struct in_sock *s, struct sock_owner *o, __u8 verdict, struct in_q *q)
{
	struct rule *r = &s->r;
	__u64 now = bpf_ktime_get_boot_ns();
	struct gate_key gk = {
		.pid = s->pid,
		.counter = r->counter,
		.dport = q->port,
		.family = q->family,
		.proto = q->proto,
		.verdict = verdict,
		.hook = HOOK_INBOUND,
	};
	__u64 carried = 0;
	struct gate *g = bpf_map_lookup_elem(&event_gates, &gk);
	if (g) {
		if (now - g->start < EVENT_WINDOW_NS) {
			__sync_fetch_and_add(&g->suppressed, 1);
			return;
		}
		carried = g->suppressed;
		__sync_fetch_and_add(&g->suppressed, -carried);
		g->start = now;
	}
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1 + carried);
		return;
	}
	ev->boot_ns = now;
	ev->pid = s->pid;
	ev->tid = s->pid;
	ev->uid = o->uid;
	ev->gid = o->gid;
	ev->counter = r->counter;
	ev->rule = s->is_default ? 0 : r->id;
	ev->exe = o->exe;
	__builtin_memcpy(ev->daddr, q->addr, 16);
	ev->dport = q->port;
	ev->family = q->family;
	ev->proto = q->proto;
	ev->verdict = verdict;
	ev->hook = HOOK_INBOUND;
	ev->has_exe = o->has_exe;
	ev->_pad = 0;
	ev->count = 1 + carried;
	ev->_pad2 = 0;
	__builtin_memcpy(ev->comm, s->comm, sizeof(ev->comm));
	if (!g) {
		struct gate ng = { .start = now };
		ng.ev = *ev;
		ng.ev.count = 0;
		bpf_map_update_elem(&event_gates, &gk, &ng, BPF_NOEXIST);
	}
	bpf_ringbuf_submit(ev, 0);
}

SEC("cgroup_skb/ingress")
int exewall_ingress(struct __sk_buff *skb)
{
	/* Every helper call counts here (one costs more than the rest of the
	 * fast path). Judged are TCP listeners (state LISTEN) and unconnected
	 * UDP sockets (state CLOSE); every other socket is connected (an
	 * accepted TCP connection was judged at its handshake, a connected UDP
	 * socket only gets its peer's datagrams): out before any lookup. */
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	__u32 state = sk->state;
	if (state != TCP_LISTEN && state != TCP_CLOSE)
		return 1;
	struct in_sock *s = bpf_sk_storage_get(&in_socks, sk, 0, 0);
	__u32 zero = 0;
	__u32 *activep = bpf_map_lookup_elem(&active, &zero);
	if (!activep)
		return 1;
	__u32 word = *activep;
	/* Fast path: the cached rule of this socket's creator accepts anyone. */
	if (s && s->open && s->valid && s->active == word)
		return 1;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *p = data;
	__u32 protocol = 0;
	int v4 = skb->protocol == bpf_htons(ETH_P_IP);
	if (v4 && (void *)(p + 20) <= end)
		protocol = p[9];
	else if (!v4 && (void *)(p + 40) <= end)
		protocol = p[6];
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) {
		/* IPv6 extension headers (or a short header): ask the socket. */
		struct bpf_sock *full = bpf_sk_fullsock(sk);
		if (!full)
			return 1;
		protocol = full->protocol;
	}
	if (protocol == IPPROTO_TCP ? state != TCP_LISTEN : protocol != IPPROTO_UDP)
		return 1;

	struct in_q q = { .port = sk->src_port };
	q.proto = protocol == IPPROTO_TCP ? PROTO_TCP : PROTO_UDP;
	__u32 thoff;
	if (v4) {
		if ((void *)(p + 20) > end)
			return 1;
		q.family = 4;
		__builtin_memcpy(q.addr, p + 12, 4);
		thoff = (p[0] & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(p + 40) > end)
			return 1;
		__u32 *a = (__u32 *)(p + 8);
		if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
			q.family = 4;
			__builtin_memcpy(q.addr, &a[3], 4);
		} else {
			q.family = 6;
			__builtin_memcpy(q.addr, a, 16);
		}
		thoff = p[6] == protocol ? 40 : 0; /* extension headers: not parsed */
	} else {
		return 1;
	}
	/* A peer accepted a moment ago under this policy: the next datagram
	 * (or handshake) from it is not judged again. */
	if (s && s->valid && s->active == word && seen_hit(s, &q, word)) {
		count(s->r.counter, VERDICT_ALLOW); /* verdict.h */
		return 1;
	}
	struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, 0);
	if (!o)
		return 1; /* created before exewall: no creator to judge */
	if (!s) {
		s = bpf_sk_storage_get(&in_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!s)
			return 1;
		s->uid = o->uid;
	}
	if (!s->valid || s->active != word) {
		if (!select_in(skb, o, s, word))
			return 1;
		if (s->r.in_open)
			return 1;
	}
	/* The transport header: UDP's source port (replies), TCP's flags (only a
	 * SYN is reported; the rest of a refused handshake is dropped quietly). */
	__u16 sport = 0;
	int syn = 1;
	if (thoff >= 20 && thoff <= 60) {
		__u8 *t = p + thoff;
		if ((void *)(t + 2) <= end)
			sport = ((__u16)t[0] << 8) | t[1];
		if (protocol == IPPROTO_TCP && (void *)(t + 14) <= end)
			syn = t[13] & TCP_FLAG_SYN;
	}

	__u8 decided = decide_in(&s->r, &q);
	__u8 verdict = decided & ~IN_LOCAL;
	if (verdict == VERDICT_ALLOW && !(decided & IN_LOCAL) && !s->r.has_names)
		seen_put(s, &q, word);
	if (verdict != VERDICT_ALLOW && protocol == IPPROTO_UDP && sport && is_reply(s, &q, sport))
		verdict = VERDICT_ALLOW;
	count(s->r.counter, verdict); /* verdict.h */
	if (verdict == VERDICT_ALLOW)
		return 1;
	if (syn)
		report_in(s, o, verdict, &q);
	return verdict == VERDICT_AUDIT;
}
