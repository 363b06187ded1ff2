/* Shared by the guard and socket-iterator objects: the record an accepted
 * socket inherits from its listener. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "exewall.h"

/* One socket as the held-socket iterator reports it: the datapath's record,
 * the local port, and whether it is a listener (reported only so that
 * sockets it accepted without a record can be given its creator). */
struct held_rec {
	struct sock_rec rec;
	__u16 sport;
	__u8 listening;
	__u8 accepted; /* its creator is its listener's (sock_heirs): judged inbound */
	__u8 _pad[4];
};

/* A copy of a TCP socket's sock_owners record, taken when it binds
 * (cgroup/post_bind4/6). BPF_F_CLONE: the kernel copies it into every
 * socket accepted from that listener, whose creator is otherwise unknown
 * (accepted sockets never pass cgroup/sock_create). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_owner);
} sock_heirs SEC(".maps");

const struct held_rec *unused_held_rec __attribute__((unused));
