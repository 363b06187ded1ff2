// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Held sockets: when a rule tightens, connections a program already holds
 * must not keep flowing. exewall_socks reports every TCP socket that can
 * still carry data (any state but LISTEN, TIME_WAIT and CLOSE: CLOSE_WAIT
 * still sends) and every connected UDP socket of this network namespace,
 * with the identity of its creator (recorded at sock_create; an accepted
 * socket inherits its listener's, see guard.h); userspace judges them with
 * the policy and lists the denied cookies in sock_doomed, in batches;
 * exewall_destroy_* then destroy exactly those. */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "kernel_types.h"
#include "maps.h"
#include "guard.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

#define AF_INET 2
#define AF_INET6 10
#define TCP_ESTABLISHED 1
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* The local port (host order), beside the fields kernel_types.h declares. */
struct sock_common___ports {
	__u16 skc_num;
} __attribute__((preserve_access_index));

static __always_inline void emit(struct bpf_iter_meta *meta, struct sock *sk, __u8 proto)
{
	struct sock_common *c = &sk->__sk_common;
	__u8 state = c->skc_state;
	struct held_rec h = {};
	/* TIME_WAIT and CLOSE carry no data; a listener is reported for its
	 * port only (see held_rec). */
	if (proto == PROTO_UDP ? state != TCP_ESTABLISHED : (state == TCP_TIME_WAIT || state == TCP_CLOSE))
		return;
	h.listening = state == TCP_LISTEN;
	h.sport = BPF_CORE_READ((struct sock_common___ports *)c, skc_num);
	struct sock_rec *rec = &h.rec;
	rec->cookie = bpf_get_socket_cookie(sk);
	rec->proto = proto;
	rec->dport = bpf_ntohs(c->skc_dport);
	if (c->skc_family == AF_INET) {
		rec->family = 4;
		__u32 a = c->skc_daddr;
		__builtin_memcpy(rec->daddr, &a, 4);
	} else if (c->skc_family == AF_INET6) {
		rec->family = 6;
		BPF_CORE_READ_INTO(&rec->daddr, c, skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return;
	}
	struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, 0);
	if (!o && proto == PROTO_TCP && !h.listening) {
		o = bpf_sk_storage_get(&sock_heirs, sk, 0, 0);
		h.accepted = 1; /* never passed sock_create: accepted */
	}
	if (!o)
		o = bpf_sk_storage_get(&sock_heirs, sk, 0, 0);
	if (o) {
		rec->owner = *o;
		rec->has_owner = 1;
	}
	bpf_seq_write(meta->seq, &h, sizeof(h));
}

SEC("iter/tcp")
int exewall_socks_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *c = ctx->sk_common;
	if (!c)
		return 0;
	struct sock *sk = bpf_skc_to_tcp_sock(c) ? (struct sock *)c : NULL;
	if (sk)
		emit(ctx->meta, sk, PROTO_TCP);
	return 0;
}

SEC("iter/udp")
int exewall_socks_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	if (sk)
		emit(ctx->meta, sk, PROTO_UDP);
	return 0;
}

SEC("iter/tcp")
int exewall_destroy_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *c = ctx->sk_common;
	if (!c)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(c);
	if (bpf_map_lookup_elem(&sock_doomed, &cookie))
		bpf_sock_destroy(c);
	return 0;
}

SEC("iter/udp")
int exewall_destroy_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	if (!sk)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (bpf_map_lookup_elem(&sock_doomed, &cookie))
		bpf_sock_destroy((struct sock_common *)sk);
	return 0;
}
