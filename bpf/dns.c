// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* DNS names (issue 15): a program whose query exewall steered to its
 * forwarder (dns.h, from the datapath's connect/sendmsg hooks) sees the
 * server it asked, never the forwarder: on the source address of each
 * reply (recvmsg, UDP) and on its connected peer (getpeername). glibc drops
 * a reply whose source is not the server it asked. */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dns.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

const struct dns_orig *unused_dns_orig __attribute__((unused));

/* steered returns the socket's record when addr:port (as this hook sees it)
 * is the forwarder it was steered to. */
static __always_inline struct dns_orig *steered(struct bpf_sock_addr *ctx, int v6hook)
{
	__u32 zero = 0;
	struct dns_conf *c = bpf_map_lookup_elem(&dns_fwd, &zero);
	if (!c || !c->active)
		return NULL;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct dns_orig *o = bpf_map_lookup_elem(&dns_socks, &cookie);
	if (!o)
		return NULL;
	__u16 fport;
	if (o->family == 4)
		fport = o->proto == PROTO_UDP ? c->udp4 : c->tcp4;
	else
		fport = o->proto == PROTO_UDP ? c->udp6 : c->tcp6;
	if (ctx->user_port != bpf_htons(fport))
		return NULL;
	if (!v6hook)
		return ctx->user_ip4 == c->ip4 ? o : NULL;
	if (o->family == 4)
		return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == bpf_htonl(0xffff) &&
				       ctx->user_ip6[3] == c->ip4
			       ? o
			       : NULL;
	return ctx->user_ip6[0] == c->ip6[0] && ctx->user_ip6[1] == c->ip6[1] && ctx->user_ip6[2] == c->ip6[2] &&
			       ctx->user_ip6[3] == c->ip6[3]
		       ? o
		       : NULL;
}

static __always_inline int restore4(struct bpf_sock_addr *ctx)
{
	struct dns_orig *o = steered(ctx, 0);
	if (o && !o->v6) {
		ctx->user_ip4 = o->addr[0];
		ctx->user_port = o->port;
	}
	return 1;
}

static __always_inline int restore6(struct bpf_sock_addr *ctx)
{
	struct dns_orig *o = steered(ctx, 1);
	if (!o)
		return 1;
	if (o->v6) {
		ctx->user_ip6[0] = o->addr[0];
		ctx->user_ip6[1] = o->addr[1];
		ctx->user_ip6[2] = o->addr[2];
		ctx->user_ip6[3] = o->addr[3];
	} else {
		/* A dual-stack socket's datagram to ::ffff:a.b.c.d is judged
		 * by the sendmsg4 hook (udpv6_sendmsg hands it to udp_sendmsg). */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = o->addr[0];
	}
	ctx->user_port = o->port;
	return 1;
}

SEC("cgroup/recvmsg4")
int exewall_dns_recvmsg4(struct bpf_sock_addr *ctx) { return restore4(ctx); }

SEC("cgroup/recvmsg6")
int exewall_dns_recvmsg6(struct bpf_sock_addr *ctx) { return restore6(ctx); }

SEC("cgroup/getpeername4")
int exewall_dns_getpeername4(struct bpf_sock_addr *ctx) { return restore4(ctx); }

SEC("cgroup/getpeername6")
int exewall_dns_getpeername6(struct bpf_sock_addr *ctx) { return restore6(ctx); }
