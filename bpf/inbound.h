/* The inbound hooks' per-socket record (bpf/inbound.c), shared with the
 * datapath: its sendmsg4/6 programs note the peers an unconnected UDP socket
 * sends to (note_peer in exewall.c), whose datagrams are replies. One map,
 * pinned as in_socks, created by whichever object loads first. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "exewall.h"

#define IN_PEERS 8

/* A peer an unconnected UDP socket sent to: its datagrams are replies. */
struct in_peer {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad;
};

/* A peer the socket's rule was found to accept, under a policy word: its
 * next packets cost a comparison instead of the destination lookups. */
#define IN_SEEN 4
struct in_seen {
	__u32 word;   /* the policy word + 1 (0: empty) */
	__u32 family;
	__u8 addr[16];
};

/* Per socket: who created it (for events) and the rule its creator falls
 * under, cached per policy word so a packet costs one storage lookup. The
 * fields the fast path reads come first. */
struct in_sock {
	__u32 active;     /* the policy word the rule was selected under */
	__u8 valid;
	__u8 open;        /* r.in_open: the creator accepts anyone */
	__u8 is_default;  /* r is default_inbound, synthesized */
	__u8 next_peer;
	__u32 pid;
	__u32 uid;
	char comm[16];
	struct rule r;    /* audit folds in audit mode */
	struct in_peer peers[IN_PEERS];
	/* Accepted peers, written under lock with seen_seq odd while writing
	 * and read without the lock (kept only when seen_seq did not move). */
	struct bpf_spin_lock lock;
	__u32 seen_seq;
	__u32 seen_next;
	struct in_seen seen[IN_SEEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct in_sock);
} in_socks SEC(".maps");

