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

/* The forwarder's peer as it sees it: the asking socket's source. */
struct dns_peer {
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
	__u16 port;    /* host order */
	__u8 proto;    /* PROTO_TCP or PROTO_UDP */
	__u8 family;   /* 4 or 6, as the packet */
};

/* Who sent it: the steered socket, and the process that first sent on it
 * to the forwarder (for a learning session's report). */
struct dns_asker {
	__u64 cookie;
	__u32 tgid;
	__u32 _pad;
};

const struct dns_peer *unused_dns_peer __attribute__((unused));
const struct dns_asker *unused_dns_asker __attribute__((unused));

/* Which steered socket (cookie) a datagram or segment reaching the
 * forwarder comes from, written as it leaves: the forwarder's Origin is a
 * map lookup (linux/dns_origin.go). A socket has no port yet when the
 * connect/sendmsg hooks steer it, so the record is taken here. An evicted
 * record costs a sock_diag lookup in the forwarder, nothing more. A record
 * is read once its packet reaches the forwarder, so it only has to outlive
 * the queries in flight: 4,096 (an LRU hash is preallocated: 400 KiB; it
 * was 16,384, 1.6 MiB). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, struct dns_peer);
	__type(value, struct dns_asker);
} dns_peers SEC(".maps");

/* The UDP record of the forwarder's fast path, by the packet's source
 * port: what Origin needs (the asking rule and the server the program
 * asked), read by the forwarder through mmap without a syscall. seq is odd
 * while the record is written (the reader then, or when seq moved, falls
 * back to dns_peers). family 0: no steered socket sent from this port
 * last. IPv4 and IPv6 sockets on one port share a slot: the later one's
 * record is here, the other's in dns_peers.
 *
 * Slots are taken by the port's low DNS_FAST_BITS bits, and sport says
 * which port a slot's record is for: a record only has to live from the
 * datagram leaving to the forwarder reading it, so two queries in flight
 * at once on ports that share a slot are rare, and the one overwritten
 * takes dns_peers like any other miss (a map lookup, nothing lost). One
 * slot per port (65,536) held 3 MiB for every daemon; 8,192 hold 384 KiB. */
#define DNS_FAST_BITS 13
struct dns_fast {
	__u32 seq;
	__u32 rule;     /* dns_orig.rule */
	__u8 peer[16];  /* the packet's source address, IPv4 in the first 4 bytes */
	__u32 addr[4];  /* dns_orig.addr */
	__u32 port;     /* dns_orig.port */
	__u8 v6;        /* dns_orig.v6 */
	__u8 family;    /* the packet's: 4 or 6; 0: no record */
	__u16 sport;    /* the source port the record is for (host order) */
};

const struct dns_fast *unused_dns_fast __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << DNS_FAST_BITS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct dns_fast);
} dns_fast SEC(".maps");

/* fast_record writes the port's fast record: o's, or none (o NULL). */
static __always_inline void fast_record(const struct dns_peer *k, const struct dns_orig *o)
{
	__u32 idx = k->port & ((1 << DNS_FAST_BITS) - 1);
	struct dns_fast *f = bpf_map_lookup_elem(&dns_fast, &idx);
	if (!f)
		return;
	if (!o && (!f->family || f->sport != k->port))
		return; /* no record, or another port's: not this one's to clear */
	__sync_fetch_and_add(&f->seq, 1);
	if (o) {
		f->rule = o->rule;
		__builtin_memcpy(f->peer, k->addr, 16);
		f->addr[0] = o->addr[0];
		f->addr[1] = o->addr[1];
		f->addr[2] = o->addr[2];
		f->addr[3] = o->addr[3];
		f->port = o->port;
		f->v6 = o->v6;
		f->family = k->family;
		f->sport = k->port;
	} else {
		f->family = 0;
	}
	__sync_fetch_and_add(&f->seq, 1);
}

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

#define DNS_ETH_P_IP 0x0800
#define DNS_ETH_P_IPV6 0x86DD
#define DNS_IPPROTO_TCP 6
#define DNS_IPPROTO_UDP 17

/* exewall_dns_egress records, for each packet to the forwarder, which
 * socket sent it (dns_peers): a steered one by cookie; any other sender's
 * stale record is removed, so the forwarder never takes it for the
 * socket that held its port before. Every other packet costs one array
 * lookup (no name rule: nothing more) or a header compare. Never drops. */
SEC("cgroup_skb/egress")
int exewall_dns_egress(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct dns_conf *c = bpf_map_lookup_elem(&dns_fwd, &zero);
	if (!c || !c->active)
		return 1;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *p = data;
	struct dns_peer k = {};
	__u8 ipproto;
	__u16 fport;
	__u8 *l4;
	if (skb->protocol == bpf_htons(DNS_ETH_P_IP)) {
		if ((void *)(p + 20) > end)
			return 1;
		if (*(__u32 *)(p + 16) != c->ip4)
			return 1;
		ipproto = p[9];
		if ((p[6] & 0x3f) || p[7]) /* a fragment after the first */
			return 1;
		__u32 ihl = (p[0] & 0xf) * 4;
		if (ihl < 20 || ihl > 60)
			return 1;
		l4 = p + ihl;
		k.family = 4;
		__builtin_memcpy(k.addr, p + 12, 4);
		fport = ipproto == DNS_IPPROTO_UDP ? c->udp4 : c->tcp4;
	} else if (skb->protocol == bpf_htons(DNS_ETH_P_IPV6)) {
		if ((void *)(p + 40) > end)
			return 1;
		const __u32 *d = (const __u32 *)(p + 24);
		if (d[0] != c->ip6[0] || d[1] != c->ip6[1] || d[2] != c->ip6[2] || d[3] != c->ip6[3])
			return 1;
		ipproto = p[6];
		l4 = p + 40;
		k.family = 6;
		__builtin_memcpy(k.addr, p + 8, 16);
		fport = ipproto == DNS_IPPROTO_UDP ? c->udp6 : c->tcp6;
	} else {
		return 1;
	}
	if (ipproto != DNS_IPPROTO_UDP && ipproto != DNS_IPPROTO_TCP)
		return 1;
	if ((void *)(l4 + 4) > end)
		return 1;
	__u16 sport = ((__u16)l4[0] << 8) | l4[1];
	__u16 dport = ((__u16)l4[2] << 8) | l4[3];
	if (!fport || dport != fport)
		return 1;
	k.port = sport;
	k.proto = ipproto == DNS_IPPROTO_UDP ? PROTO_UDP : PROTO_TCP;
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct dns_orig *o = bpf_map_lookup_elem(&dns_socks, &cookie);
	if (k.proto == PROTO_UDP)
		fast_record(&k, o);
	if (!o) {
		bpf_map_delete_elem(&dns_peers, &k);
		return 1;
	}
	struct dns_asker *have = bpf_map_lookup_elem(&dns_peers, &k);
	if (!have || have->cookie != cookie) {
		/* The first packet of a socket to the forwarder leaves in its
		 * sender's call (a UDP send, a TCP connect's SYN). */
		struct dns_asker a = { .cookie = cookie, .tgid = bpf_get_current_pid_tgid() >> 32 };
		bpf_map_update_elem(&dns_peers, &k, &a, BPF_ANY);
	}
	return 1;
}
