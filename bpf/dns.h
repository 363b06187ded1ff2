/* DNS names (issue 15, DESIGN.md "Destination entries"): the port-53
 * traffic of a process whose rule has a name entry, addressed to a trusted
 * resolver, is steered to exewall's forwarder on loopback. The forwarder
 * asks the server the program asked, writes the answer's addresses into the
 * rule's destination nodes (host prefixes, userspace) and only then answers.
 * The server the program addressed is recorded per socket (cookie): the
 * forwarder reads it, and recvmsg/getpeername (bpf/dns.c) give it back to the
 * program. No DNS is parsed here. Included by exewall.c (one call in judge)
 * and dns.c; the maps are the datapath's, pinned with it. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "exewall.h"

/* Where the forwarder listens, and who it is. Written by the daemon. */
struct dns_conf {
	__u32 ip4;    /* forwarder's IPv4 address, network order (127.0.0.1) */
	__u32 ip6[4]; /* forwarder's IPv6 address (::1) */
	__u16 udp4;   /* forwarder's ports, host order; 0: no forwarder, */
	__u16 tcp4;   /* the lookups of name rules fail (closed, never open) */
	__u16 udp6;
	__u16 tcp6;
	__u32 self_tgid; /* the daemon: its own upstream queries go out as asked */
	__u8 odd_ports;  /* a trusted resolver listens on a port other than 53 */
	__u8 active;     /* some rule has a name entry: recvmsg/getpeername look */
	__u8 learning;   /* a learning session: every process's queries to a
			  * trusted resolver are steered, under DNS_NO_RULE */
	__u8 _pad;
};

/* The rule id of a query steered only because a learning session runs:
 * its answer binds nothing, the forwarder reports it (Config.Observe). */
#define DNS_NO_RULE 0xffffffffu


/* A trusted resolver (the policy's resolvers:, else the host's). */
struct dns_server {
	__u8 addr[16]; /* IPv4 in the first 4 bytes; IPv4-mapped is IPv4 */
	__u16 port;    /* host order */
	__u8 family;   /* 4 or 6 */
	__u8 _pad;
};

/* What a steered socket asked for, by socket cookie. */
struct dns_orig {
	__u32 addr[4]; /* as the program gave it: user_ip4 in [0], or user_ip6 */
	__u32 port;    /* user_port as given (network order in the low 16 bits) */
	__u32 rule;    /* the asking rule's stable id (its counter slot) */
	__u8 v6;       /* given to an IPv6 socket */
	__u8 proto;    /* PROTO_TCP or PROTO_UDP */
	__u8 family;   /* 4 or 6 as judged (IPv4-mapped is 4) */
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_conf);
} dns_fwd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dns_server);
	__type(value, __u8);
} dns_resolvers SEC(".maps");

/* Sockets with a query in flight or recently answered; an evicted record
 * fails its lookup (the forwarder cannot tell who asked), never opens. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u64);
	__type(value, struct dns_orig);
} dns_socks SEC(".maps");

/* dns_learning reports whether a learning session steers every query. */
static __always_inline int dns_learning(void)
{
	__u32 zero = 0;
	struct dns_conf *c = bpf_map_lookup_elem(&dns_fwd, &zero);
	return c && c->learning;
}

enum dns_steer { DNS_PASS = 0, DNS_STEERED = 1, DNS_REFUSED = 2 };

/* dns_steer sends a query of a rule with name entries to the forwarder when
 * its server is trusted: DNS_STEERED (allowed, redirected), DNS_REFUSED (no
 * forwarder: the lookup fails), or DNS_PASS (judged as any connection).
 * v6hook is a constant of the calling program: a v4 program may not touch
 * user_ip6 nor a v6 one user_ip4. */
static __always_inline int dns_steer(struct bpf_sock_addr *ctx, int v6hook, __u32 family, const __u8 *addr,
				     __u16 port, __u8 proto, __u32 rule)
{
	if (proto != PROTO_UDP && proto != PROTO_TCP)
		return DNS_PASS;
	__u32 zero = 0;
	struct dns_conf *c = bpf_map_lookup_elem(&dns_fwd, &zero);
	if (!c)
		return DNS_PASS;
	/* A socket already steered, sending to the forwarder again: a
	 * dual-stack socket connected to ::ffff:a.b.c.d is judged at every
	 * send (sendmsg4, with the address it is connected to). */
	const __u32 *w = (const __u32 *)addr;
	if (port && (family == 4 ? (port == c->udp4 || port == c->tcp4) && w[0] == c->ip4
				  : (port == c->udp6 || port == c->tcp6) && w[0] == c->ip6[0] && w[1] == c->ip6[1] &&
					    w[2] == c->ip6[2] && w[3] == c->ip6[3])) {
		__u64 cookie = bpf_get_socket_cookie(ctx);
		return bpf_map_lookup_elem(&dns_socks, &cookie) ? DNS_STEERED : DNS_PASS;
	}
	if (port != 53 && !c->odd_ports)
		return DNS_PASS;
	if (c->self_tgid && (bpf_get_current_pid_tgid() >> 32) == c->self_tgid)
		return DNS_PASS;
	struct dns_server k = { .port = port, .family = family };
	__builtin_memcpy(k.addr, addr, 16);
	if (!bpf_map_lookup_elem(&dns_resolvers, &k))
		return DNS_PASS;

	__u16 fport;
	if (family == 4)
		fport = proto == PROTO_UDP ? c->udp4 : c->tcp4;
	else
		fport = proto == PROTO_UDP ? c->udp6 : c->tcp6;
	if (!fport)
		return DNS_REFUSED;

	struct dns_orig o = { .rule = rule, .v6 = v6hook, .proto = proto, .family = family };
	if (v6hook) {
		o.addr[0] = ctx->user_ip6[0];
		o.addr[1] = ctx->user_ip6[1];
		o.addr[2] = ctx->user_ip6[2];
		o.addr[3] = ctx->user_ip6[3];
	} else {
		o.addr[0] = ctx->user_ip4;
	}
	o.port = ctx->user_port;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&dns_socks, &cookie, &o, BPF_ANY))
		return DNS_REFUSED;

	if (!v6hook) {
		ctx->user_ip4 = c->ip4;
	} else if (family == 4) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = c->ip4;
	} else {
		ctx->user_ip6[0] = c->ip6[0];
		ctx->user_ip6[1] = c->ip6[1];
		ctx->user_ip6[2] = c->ip6[2];
		ctx->user_ip6[3] = c->ip6[3];
	}
	ctx->user_port = bpf_htons(fport);
	return DNS_STEERED;
}
