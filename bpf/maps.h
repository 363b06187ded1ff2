/* The maps shared by every exewall program. Each object includes this file;
 * the loader hands the datapath's maps to the others, so they are one set. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "exewall.h"

/* The maps whose size follows the policy (the rule selectors, destination
 * nodes and counter names). Each is an array of one map: its slot 0 holds a
 * hash that userspace creates for the policy's size and replaces with a
 * larger copy when a policy needs more (linux/sized.go). A hash preallocates
 * 16 bytes of buckets per possible entry even without BPF_F_NO_PREALLOC's
 * elements: sized for MAX_RULES they cost 4 MiB each, empty. The max_entries
 * below are the template's only: inner hashes of any size fit it. Only
 * userspace writes them, so a replacement is a copy and one pointer swap.
 * Programs find the hash with sized_map (an inlined array lookup) and look
 * it up as before; an empty slot (never in force) reads as an empty map.
 * (The inner template gives sizes, not types: clang emits the types of a
 * nested definition's pointers as declarations only.) */
#define SIZED_HASH(name, ktype, vtype)                                  \
	struct {                                                         \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                \
		__uint(max_entries, 1);                                  \
		__type(key, __u32);                                      \
		__array(values, struct {                                 \
			__uint(type, BPF_MAP_TYPE_HASH);                 \
			__uint(max_entries, 1);                          \
			__uint(map_flags, BPF_F_NO_PREALLOC);            \
			__uint(key_size, sizeof(ktype));                 \
			__uint(value_size, sizeof(vtype));               \
		});                                                      \
	} name SEC(".maps")

static __always_inline void *sized_map(void *outer)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(outer, &zero);
}

/* sized_lookup looks key up in the sized map outer; NULL when absent. */
#define sized_lookup(outer, key)                                         \
	({                                                               \
		void *__inner = sized_map(outer);                        \
		__inner ? bpf_map_lookup_elem(__inner, key) : NULL;      \
	})

/* active[0] is the policy generation in force. Userspace fills the other
 * generation, flips this word, waits for an RCU grace period, then clears
 * the old one: each program reads it once, so no attempt sees a mix. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct config);
} configs SEC(".maps");

SIZED_HASH(exe_rules, struct exe_key, struct rule);

SIZED_HASH(cgroup_rules, struct id_key, struct rule);

SIZED_HASH(uid_rules, struct id_key, struct rule);

SIZED_HASH(gid_rules, struct id_key, struct rule);

SIZED_HASH(dests, struct dest_key, struct dest_val);

/* DNS name bindings of rules with name entries (struct bind_key): value
 * their name node (struct bind_val). Sized to the bindings in force. */
SIZED_HASH(name_binds, struct bind_key, struct bind_val);

/* Local ranges for local-only: value 1 is local, 0 carves out an exception
 * (cloud metadata). Kept current from netlink; not per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct local_key);
	__type(value, __u8);
} local_nets SEC(".maps");

/* Per-rule counters by stable slot (0 is the default), in chunks of
 * COUNTER_CHUNK slots: per-CPU arrays (the lookup is inlined, and no two
 * CPUs share a cache line) that userspace creates as slots are handed out
 * (linux/counters.go), so a daemon with few rules holds one chunk instead
 * of MAX_RULES slots on every CPU (9 MiB on 2 CPUs, growing with the CPU
 * count). A chunk, once in place, is never replaced: counts are never
 * copied, so none is lost while a policy grows. */
#define COUNTER_CHUNK_BITS 9
#define COUNTER_CHUNK (1u << COUNTER_CHUNK_BITS)
#define COUNTER_CHUNKS ((MAX_RULES >> COUNTER_CHUNK_BITS) + 1)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, COUNTER_CHUNKS);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
		__uint(max_entries, COUNTER_CHUNK);
		__uint(key_size, sizeof(__u32));
		__uint(value_size, sizeof(struct counter));
	});
} counters SEC(".maps");

/* counter_of is counter slot `slot` on this CPU; NULL when its chunk is
 * not in place (never for a slot a rule in force has). */
static __always_inline struct counter *counter_of(__u32 slot)
{
	__u32 chunk = slot >> COUNTER_CHUNK_BITS, i = slot & (COUNTER_CHUNK - 1);
	void *m = bpf_map_lookup_elem(&counters, &chunk);
	return m ? bpf_map_lookup_elem(m, &i) : NULL;
}

/* Ring buffer reservations that failed: the event is lost, never the verdict. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

/* Violation events. The loader sets the size (Config.RingBufSize, 1 MiB by
 * default) in every object. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");


/* Counter slot -> rule name, written by userspace only: lets a restarted
 * daemon name the counters it adopts. */
SIZED_HASH(counter_names, __u32, struct rule_name);

/* Executable identities seen at exec under an exe rule's path (a file
 * renamed over it) until userspace adopts them; value: the path. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct file_id);
	__type(value, struct path_key);
} exe_learned SEC(".maps");

/* Non-zero while exe_learned may hold entries: spares everyone else a lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} learned_count SEC(".maps");

SIZED_HASH(path_rules, struct path_key, struct rule);

SIZED_HASH(name_rules, struct name_key, struct rule);

/* Executable identities executed by a name in name_rules, until userspace
 * adopts them (value: the name's hash); counted in learned_count. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct file_id);
	__type(value, __u64);
} exe_named SEC(".maps");

/* The cgroup exewall is attached to: programs not bound to it (exec
 * tracing) act only for tasks inside it. */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} attach_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_owner);
} sock_owners SEC(".maps");

/* Cookies of held sockets userspace judged denied: the destroy pass ends them.
 * A sweep that dooms more marks them in batches of max_entries, one pass of
 * the destroy iterators each (linux/sockets.go): 8,192 per pass. The bucket
 * array is allocated at creation even without preallocation (16 bytes an
 * entry): 65,536 held 1 MiB for every daemon to spare a mass sweep its
 * extra passes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} sock_doomed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct gate_key);
	__type(value, struct gate);
} event_gates SEC(".maps");

/* Identity taken at exec and the per-thread rule cache (struct task_state):
 * task storage, freed with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} task_states SEC(".maps");

/* The same identities by thread group id, for kernels whose cgroup programs
 * cannot use task storage (before 6.16): filled at exec, copied at fork,
 * removed when the thread group leader is freed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, struct proc_ident);
} proc_idents SEC(".maps");

/* Identities of the dynamic loaders (ld.so), written by userspace: a loader
 * run directly is judged as the program it maps. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct file_id);
	__type(value, __u8);
} loaders SEC(".maps");

/* Processes in IDENT_LOADER_PENDING: non-zero spares every file read of the
 * host a task storage lookup in the loader hook. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} loader_pending SEC(".maps");

/* Verdicts reached a moment ago, per CPU and thread (struct memo). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MEMO_CPUS * MEMO_WAYS);
	__type(key, __u32);
	__type(value, struct memo);
} rule_memo SEC(".maps");

/* Set by the loader (rodata, before load): 1 when cgroup programs may use
 * task storage on this kernel, 0 to keep identities in proc_idents. */
volatile const __u8 use_task_storage = 1;

static __always_inline struct proc_ident *ident_of(struct task_struct *task, int create)
{
	if (use_task_storage) {
		struct task_state *ts = bpf_task_storage_get(&task_states, task->group_leader, 0,
							     create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
		return ts ? &ts->id : NULL;
	}
	__u32 tgid = task->tgid;
	struct proc_ident *id = bpf_map_lookup_elem(&proc_idents, &tgid);
	if (id || !create)
		return id;
	struct proc_ident zero = {};
	bpf_map_update_elem(&proc_idents, &tgid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&proc_idents, &tgid);
}
