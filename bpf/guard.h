/* Shared by the guard and socket-iterator objects: the record an accepted
 * socket inherits from its listener. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "exewall.h"

/* A copy of a listener's sock_owners record, taken when it starts listening
 * (sockops TCP_LISTEN_CB). BPF_F_CLONE: the kernel copies it into every
 * socket accepted from that listener, whose creator is otherwise unknown
 * (accepted sockets never pass cgroup/sock_create). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_owner);
} sock_heirs SEC(".maps");
