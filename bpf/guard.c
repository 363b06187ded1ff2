// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Guards around the datapath's judgement, for paths where the destination
 * judged at connect/sendmsg is not where packets go, or where no judgement
 * runs at all (issue 13):
 * - source routes: an IPv6 routing header (setsockopt IPV6_RTHDR, the RFC
 *   2292 forms, ancillary data, inherited from a listener) or an IPv4
 *   LSRR/SSRR option sends the packet to its first segment while the hook
 *   judged the last. Restricted programs may not set them, and no packet
 *   carrying one leaves a socket a restricted program created or sends on.
 * - ping sockets handed over (SCM_RIGHTS, exec) or held across a tightening:
 *   their sends reach no sendmsg hook; a restricted sender's echo requests
 *   are dropped, as it could not have created the socket.
 * - accepted sockets: they inherit their listener's creator (sock_heirs),
 *   copied when a TCP socket binds (post_bind: no cost on connect or send). */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kernel_types.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#include "verdict.h"
#include "guard.h"

#define SOL_IP 0
#define SOL_IPV6 41
#define IP_OPTIONS 4
#define IPV6_2292RTHDR 5
#define IPV6_2292PKTOPTIONS 6
#define IPV6_RTHDR 57
#define PAGE_SIZE 4096
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_ICMPV6 58
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_DEST 60
#define IPOPT_END 0
#define IPOPT_NOOP 1
#define IPOPT_LSRR 0x83
#define IPOPT_SSRR 0x89
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128

/* ip_options_srr: 1 when the IPv4 options in [p, end) hold a source route. */
static __always_inline int ip_options_srr(__u8 *p, void *end)
{
	__u32 i = 0;
	for (int n = 0; n < 40; n++) {
		if (i >= 40)
			return 0;
		__u8 *q = p + (i & 63);
		if ((void *)(q + 2) > end)
			return 0;
		__u8 t = q[0];
		if (t == IPOPT_END)
			return 0;
		if (t == IPOPT_NOOP) {
			i++;
			continue;
		}
		if (t == IPOPT_LSRR || t == IPOPT_SSRR)
			return 1;
		__u8 len = q[1];
		if (len < 2)
			return 0;
		i += len;
	}
	return 0;
}

/* Global functions: verified once each instead of along every path of every
 * call site (egress asked restricted_current three times over): egress's
 * verification 66 -> 37 ms, setsockopt's 34 -> 31 (2-CPU EPYC VM). */
__attribute__((noinline)) int restricted_now(void)
{
	return restricted_current();
}

__attribute__((noinline)) int restricted_by(struct who *w, struct __sk_buff *skb)
{
	if (!w || !skb)
		return 0;
	return restricted_owner(w, skb);
}

SEC("cgroup/setsockopt")
int exewall_setsockopt(struct bpf_sockopt *ctx)
{
	int level = ctx->level, name = ctx->optname;
	int srcrt = (level == SOL_IPV6 && (name == IPV6_RTHDR || name == IPV6_2292RTHDR || name == IPV6_2292PKTOPTIONS)) ||
		    (level == SOL_IP && name == IP_OPTIONS);
	if (srcrt && ctx->optlen > 0) {
		int refuse = 1;
		if (level == SOL_IP) {
			__u8 *p = ctx->optval;
			refuse = ip_options_srr(p, ctx->optval_end);
			/* Longer than the kernel ever reads: refuse what it cannot check. */
			if (ctx->optlen > PAGE_SIZE)
				refuse = 1;
		}
		if (refuse && restricted_now())
			return 0; /* EPERM */
	}
	/* Pass every other option through untouched: a buffer larger than a
	 * page is the caller's own (optlen 0 tells the kernel so). */
	if (ctx->optlen > PAGE_SIZE)
		ctx->optlen = 0;
	return 1;
}

/* A TCP socket that binds explicitly (every server does) hands its
 * creator to the sockets it will accept. Clients that connect without bind
 * never run this. A listener that never binds (listen() picks a port) is
 * matched by port when the sweep runs (sockets.go). */
static __always_inline int keep_heir(struct bpf_sock *sk)
{
	if (sk->type != SOCK_STREAM || sk->protocol != IPPROTO_TCP)
		return 1;
	struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, 0);
	if (o)
		bpf_sk_storage_get(&sock_heirs, sk, o, BPF_SK_STORAGE_GET_F_CREATE);
	return 1;
}

SEC("cgroup/post_bind4")
int exewall_bind4(struct bpf_sock *sk) { return keep_heir(sk); }

SEC("cgroup/post_bind6")
int exewall_bind6(struct bpf_sock *sk) { return keep_heir(sk); }

/* The socket's creator: its own record, else its listener's. */
static __always_inline struct sock_owner *owner_of(struct bpf_sock *sk)
{
	struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, 0);
	if (!o)
		o = bpf_sk_storage_get(&sock_heirs, sk, 0, 0);
	return o;
}

/* drop_srcrt: a packet with a source route leaves only if neither the
 * socket's creator nor (for sockets whose sends run in the sender's
 * context: not TCP) the sending task is restricted. */
static __always_inline int drop_srcrt(struct __sk_buff *skb, struct bpf_sock *sk)
{
	struct sock_owner *o = owner_of(sk);
	struct who w = {};
	if (o) {
		who_owner(&w, o);
		if (restricted_by(&w, skb))
			return 1;
	}
	if (sk->protocol == IPPROTO_TCP)
		return 0;
	return restricted_now();
}

/* drop_echo: an echo request from a ping (or raw) socket is dropped when the
 * task sending it is restricted (ping sends run in the sender's context). */
static __always_inline int drop_echo(struct bpf_sock *sk)
{
	if (sk->type != SOCK_DGRAM && sk->type != SOCK_RAW)
		return 0;
	return restricted_now();
}

/* The socket a packet belongs to; for a SYN-ACK (sent on behalf of a request
 * socket) its listener, whose options the connection inherits. */
static __always_inline struct bpf_sock *full_sock(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return NULL;
	struct bpf_sock *full = bpf_sk_fullsock(sk);
	if (full)
		return full;
	return bpf_get_listener_sock(sk);
}

SEC("cgroup_skb/egress")
int exewall_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *p = data;
	struct bpf_sock *sk;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if ((void *)(p + 20) > end)
			return 1;
		__u8 ihl = p[0] & 0xf;
		if (ihl == 5 && p[9] != IPPROTO_ICMP)
			return 1; /* nearly every packet stops here */
		sk = full_sock(skb);
		if (!sk)
			return 1;
		if (ihl > 5 && ip_options_srr(p + 20, end) && drop_srcrt(skb, sk))
			return 0;
		if (p[9] == IPPROTO_ICMP && ihl == 5 && (void *)(p + 21) <= end && p[20] == ICMP_ECHO && drop_echo(sk))
			return 0;
		return 1;
	}
	if (skb->protocol != bpf_htons(ETH_P_IPV6))
		return 1;
	if ((void *)(p + 40) > end)
		return 1;
	__u8 nh = p[6];
	if (nh != NEXTHDR_HOP && nh != NEXTHDR_DEST && nh != NEXTHDR_ROUTING && nh != IPPROTO_ICMPV6)
		return 1; /* nearly every packet stops here */
	sk = full_sock(skb);
	if (!sk)
		return 1;
	/* Extension headers in the order the kernel writes them: hop-by-hop,
	 * destination options, routing. */
	__u32 off = 40;
	for (int i = 0; i < 3; i++) {
		if (nh == NEXTHDR_ROUTING)
			return drop_srcrt(skb, sk) ? 0 : 1;
		if (nh != NEXTHDR_HOP && nh != NEXTHDR_DEST)
			break;
		if (off > 1024)
			return 1;
		__u8 *q = p + (off & 2047);
		if ((void *)(q + 2) > end)
			return 1;
		nh = q[0];
		off += ((__u32)q[1] + 1) * 8;
	}
	if (nh != IPPROTO_ICMPV6 || off > 1024)
		return 1;
	__u8 *q = p + (off & 2047);
	if ((void *)(q + 1) <= end && q[0] == ICMPV6_ECHO_REQUEST && drop_echo(sk))
		return 0;
	return 1;
}
