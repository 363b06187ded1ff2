/* Shared between the datapath programs: map layouts and constants. The Go side
 * gets these types from bpf2go (-type), never by hand. */
#pragma once

#include <linux/types.h>

#define MAX_RULES (1 << 17)       /* rules per policy generation */
#define MAX_DEST_NODES (1 << 18)  /* distinct (rule, prefix) pairs per two generations */
#define MAX_NAME_BINDS (1 << 18)  /* DNS name bindings (rule, address) per two generations */
#define MAX_DEST_ENTRIES 16       /* entries one destination lookup can see */
#define MAX_PREFIX_LENS 8         /* distinct prefix lengths per rule and family */
#define MAX_CGROUP_DEPTH 32
#define GEN_BIT (1u << 31)        /* rule ids carry their generation in the top bit */

enum action { ACTION_ALLOW = 0, ACTION_DENY = 1, ACTION_LOCAL_ONLY = 2 };
enum verdict { VERDICT_ALLOW = 1, VERDICT_DENY = 2, VERDICT_AUDIT = 3 };
enum proto { PROTO_ANY = 0, PROTO_TCP = 1, PROTO_UDP = 2, PROTO_ICMP = 3 };
enum hook { HOOK_CONNECT4 = 1, HOOK_CONNECT6 = 2, HOOK_SENDMSG4 = 3, HOOK_SENDMSG6 = 4, HOOK_SOCK_CREATE = 5,
	    HOOK_INBOUND = 6 /* inbound (bpf/inbound.c): daddr is the peer, dport the local port */ };
enum dir { DIR_BOTH = 0, DIR_OUT = 1, DIR_IN = 2 }; /* inbound: a destination entry's direction */
#define PROTO_RAW 4 /* in events: a socket kind refused at creation (raw, SCTP, ...) */
#define MAX_NAME 64

/* Executable identity as the kernel sees it: exe_file->f_inode. */
struct file_id {
	__u32 dev; /* i_sb->s_dev, kernel encoding (major << 20 | minor) */
	__u32 igen; /* i_generation */
	__u64 ino;
};

/* What a process is judged as: taken at exec (bpf/exec.c), inherited at
 * fork, never read again from mm->exe_file (which prctl(PR_SET_MM_MAP) can
 * change) once taken. Kept in task storage of the thread group leader, or
 * on kernels whose cgroup programs cannot use task storage, in proc_idents
 * by thread group id. */
enum ident_state {
	IDENT_NONE = 0,
	IDENT_EXEC = 1,           /* taken at exec (or inherited from a parent that had it) */
	IDENT_FIRST_SIGHT = 2,    /* started before exewall: mm->exe_file when first seen */
	IDENT_LOADER_PENDING = 3, /* a dynamic loader run directly: the program it maps is next */
	IDENT_LOADER_MAIN = 4,    /* the program a directly run loader mapped */
};

struct proc_ident {
	struct file_id exe;  /* the file exec'd (exe_file->f_inode) or the loader's program */
	struct file_id real; /* the file behind it when another (overlayfs' lower file) */
	__u8 state;          /* enum ident_state */
	__u8 has_real;
	__u8 _pad[6];
};

struct exe_key {
	struct file_id id;
	__u32 gen; /* policy generation (0 or 1) */
	__u32 _pad;
};

/* Key for cgroup id, uid and gid selector maps. */
struct id_key {
	__u64 id;
	__u32 gen;
	__u32 _pad;
};

/* What a selector map yields: the rule itself, so judging costs one lookup. */
struct rule {
	__u32 id;      /* rule id: index | gen << 31, part of the dests keys */
	__u32 counter; /* stable slot in counters, survives re-applies */
	__u8 action;   /* enum action */
	__u8 audit;
	__u8 has_dests;
	__u8 unrestricted; /* action allow and no deny entries: any socket kind may be created */
	/* The distinct prefix lengths of the rule's destination entries, longest
	 * first, per family: one exact hash lookup per length, so the cost does
	 * not grow with the number of rules (an LPM trie over all rules did). */
	__u8 nlens4;
	__u8 nlens6;
	__u8 lens4[MAX_PREFIX_LENS];
	__u8 lens6[MAX_PREFIX_LENS];
	__u8 has_names; /* a name entry: its DNS goes to the forwarder (dns.h) */
	/* inbound: begin (bpf/inbound.c) */
	__u8 in_open; /* action allow and no deny entry covering "in": accepts anyone */
	/* inbound: end */
	__u8 _pad;
};

/* The rule a thread falls under, selected once per policy generation (and
 * cgroup, and uid/gid when rules select by them): a cgroup program finds it
 * with one task storage lookup instead of walking exe, cgroup ancestors, uid
 * and gid on every call. Per thread, so no lock: threads never share it. */
struct rule_cache {
	__u32 active;     /* the active word it was selected under */
	__u8 valid;
	__u8 by_cgroup;   /* selection depended on the cgroup */
	__u8 by_ids;      /* ... on uid and gid */
	__u8 is_default;  /* no rule: r is the default, synthesized */
	__u64 cgroup;
	__u64 uid_gid;
	struct file_id exe; /* the identity judged, for events */
	__u8 has_exe;
	__u8 has_named;   /* named holds the rule of a path name this executable
			   * was run by (a retargeted symlink): it may only tighten */
	__u8 pending;     /* selected for a directly run loader not yet judged
			   * as its program: not to be memoized */
	__u8 _pad[5];
	struct rule r;    /* the rule; audit folds in audit mode */
	struct rule named;
};

struct task_state {
	struct proc_ident id;   /* meaningful on the thread group leader */
	struct rule_cache cache; /* this thread's */
};

/* A verdict the current thread reached a moment ago, so that the next call
 * with the same question costs neither the task storage lookup (about a
 * hundred ns here) nor a destination hash lookup. One slot per CPU and
 * MEMO_WAYS threads: a program on a CPU reads only that CPU's slots (CPUs
 * past MEMO_CPUS judge without one). Only ALLOW verdicts that depend on
 * nothing but the policy word, the thread (task, start time, exec count),
 * the destination and, where the rule's selection did, the cgroup and ids
 * are kept: local-only decisions (local_nets changes without a new word)
 * never are.
 *
 * The allows a slot answers are counted in the slot itself (state's low
 * half), in the cache line the answer was read from: the counters element
 * (a per-CPU array chunk, behind a vmalloc'd pointer table) is the
 * costliest line of a verdict. They move into counters when the slot is
 * overwritten, if the counter slot still belongs to the rule (epoch).
 * Userspace adds the pending allows of every slot to counters (linux/
 * counters.go), reading the slots before and after and again while a seq
 * moved or is odd.
 *
 * state is seq << 32 | pending. A reader checks the slot and counts with a
 * compare-and-exchange of the state it read: it fails, and the reader
 * judges without the memo, when a writer came in between. A writer (under
 * the lock, interrupts off) makes seq odd and takes pending, moves it into
 * counters, then writes the slot and makes seq even again. Hot fields are
 * within bytes 8..71 (one cache line where the array's values start 56
 * bytes into a line, as on 6.18 x86_64). */
#define MEMO_CPUS 64 /* the map stays under 32 KiB: kmalloc'd, in the direct map */
#define MEMO_WAYS 2
#define MEMO_ALL 1  /* the rule allows everything: any destination */
#define MEMO_DEST 2 /* this destination, protocol and port were allowed */
#define MEMO_PENDING_MAX (1u << 30) /* a slot with this many pending allows is rewritten (flushed) */
struct memo {
	struct bpf_spin_lock lock;
	__u32 _pad0;
	__u64 state;      /* seq << 32 | pending allows not yet in counters */
	__u32 word;       /* the active word the verdict was reached under */
	__u32 tag;        /* MEMO_TAG: a slot copied from another layout never matches */
	__u64 task;       /* the thread (its task_struct) ... */
	__u64 start;      /* ... its start time (a task_struct reused later starts later) ... */
	__u64 exec_id;    /* ... and how many execs it made */
	__u8 kind;        /* MEMO_ALL or MEMO_DEST; 0: empty */
	__u8 by_cgroup;
	__u8 by_ids;
	__u8 family;
	__u8 proto;
	__u8 in_open;     /* the thread's rule accepts anyone inbound (0 in slots of older versions: safe) */
	__u16 port;
	__u8 addr[16];
	__u32 counter;    /* the counter slot the verdict is counted in */
	__u32 _pad2;
	__u64 epoch;      /* that counter's epoch when the slot was written */
	__u64 cgroup;
	__u64 uid_gid;
	__u8 _pad3[24]; /* 128 bytes: no two CPUs' slots share a cache line */
};
#define MEMO_TAG_BASE 0x4d450000u
#define MEMO_TAG (MEMO_TAG_BASE | (__u32)sizeof(struct memo))

/* Per-generation settings, switched together with the maps. */
struct config {
	__u32 default_counter;
	__u8 default_action;
	__u8 audit_mode;
	__u8 has_cgroup_rules;
	__u8 has_uid_rules;
	__u8 has_gid_rules;
	/* inbound: begin (bpf/inbound.c) */
	__u8 default_inbound; /* enum action for unlisted programs' inbound (absent: allow) */
	/* inbound: end */
	__u8 _pad[2];
};

struct dest_key {
	__u32 rule;
	__u8 family;   /* 4 or 6 */
	__u8 plen;     /* prefix length */
	__u16 _pad;
	__u8 addr[16]; /* masked to plen; IPv4 in the first 4 bytes */
};

struct dest_entry {
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto;   /* enum proto, 0 = any */
	__u8 verdict; /* VERDICT_ALLOW or VERDICT_DENY */
	/* inbound: begin (bpf/inbound.c) */
	__u8 dir;     /* enum dir: DIR_BOTH, DIR_OUT or DIR_IN (engine.Direction) */
	/* inbound: end */
	__u8 _pad;
};

/* A prefix node: its own entries, then those of every shorter prefix that
 * contains it (flattened by userspace), in the order they are tried. The
 * first (longest) node found therefore holds every entry that can match. */
struct dest_val {
	__u32 count;
	__u32 _pad;
	struct dest_entry e[MAX_DEST_ENTRIES];
};

/* A DNS name binding (DESIGN.md "Destination entries"): a process of rule
 * `rule` (its id, generation bit included) was answered addr for a name one
 * of the rule's name entries matches, within the answer's TTL. The value
 * (struct bind_val) holds the index of the rule's name node: the dests entry at key
 * { rule, DEST_NAME_NODE, 0, index } listing the rule's entries that hold at
 * this host (the name entries its names match, and CIDR host entries of the
 * same address), deny first, then in file order. Bindings whose names match
 * the same entries share one node, so a binding costs a small element here
 * instead of a 136-byte destination node. Laid out like dest_key without
 * the prefix length. */
struct bind_key {
	__u32 rule;
	__u8 family;   /* 4 or 6 */
	__u8 _pad[3];
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

/* What a binding points at: its name node, whose only entry (the common
 * case: one name entry matches) is kept here too, so that the connect needs
 * no second lookup. 16 bytes: the element stays in the allocator's 96-byte
 * size class. */
struct bind_val {
	struct dest_entry e; /* the name node's entry when count is 1 */
	__u32 node;          /* index of the rule's name node */
	__u8 count;          /* entries in the name node */
	__u8 _pad[3];
};

/* dest_key.family of a name node (struct bind_key): its addr holds the
 * node's index (a __u32, host order) and plen is 0. */
#define DEST_NAME_NODE 0

/* An exe rule's location, so that a file renamed over that path (a package
 * upgrade) is recognised at its first exec, before userspace re-resolves. */
struct path_key {
	struct file_id dir; /* the parent directory */
	__u32 gen;
	__u32 _pad;
	char name[MAX_NAME];
};

/* An exe rule's path name (and the symlinks on its way), by FNV-1a hash of
 * the string: an executable whose identity userspace has not resolved yet
 * but which was executed by that name (a symlink retargeted by
 * update-alternatives) is judged by the rule too, from its first run. A name
 * is only a name (another mount namespace can put anything there), so such a
 * rule may only tighten the verdict, never loosen it. */
#define NAME_MAX_LEN 256
struct name_key {
	__u64 hash;
	__u32 gen;
	__u32 _pad;
};

/* Who created a socket: lets held sockets be re-judged when a rule tightens. */
struct sock_owner {
	struct file_id exe;
	__u64 cgroup;
	__u32 uid;
	__u32 gid;
	__u8 has_exe;
	__u8 _pad[7];
};

/* One held socket as the socket iterator reports it to userspace. */
struct sock_rec {
	__u64 cookie;
	struct sock_owner owner;
	__u8 daddr[16];
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 has_owner;
	__u8 _pad[3];
};

struct local_key {
	__u32 prefixlen; /* 32 + address bits */
	__u32 family;    /* 4 or 6, big endian */
	__u8 addr[16];
};

struct rule_name {
	char name[64];
};

struct counter {
	__u64 allowed;
	__u64 denied;
	__u64 audited;
	__u64 epoch; /* set by userspace when the slot is handed to a rule (struct memo) */
};

struct event {
	__u64 boot_ns;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 counter;
	__u32 rule;
	struct file_id exe;
	__u8 daddr[16];
	__u16 dport;
	__u8 family; /* 4 or 6, as judged (IPv4-mapped is 4) */
	__u8 proto;  /* enum proto */
	__u8 verdict;
	__u8 hook;
	__u8 has_exe;
	__u8 _pad;
	char comm[16];
	__u32 count; /* attempts this event stands for (1, or 1 + those held back) */
	__u32 _pad2;
};

/* Events are aggregated per (process, rule, destination, protocol, hook) and
 * time window: the first attempt is reported at once, repeats within the
 * window are counted in the kernel and reported with the next event (or by
 * the daemon's sweep when the burst ends). A storm of millions of identical
 * attempts then costs a few events, and every attempt is still accounted. */
#define EVENT_WINDOW_NS 1000000000ULL

struct gate_key {
	__u32 pid;
	__u32 counter;
	__u8 daddr[16];
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 verdict;
	__u8 hook;
	__u8 sk_family; /* the socket's: a v6 socket sending to ::ffff:a.b.c.d is another path */
	__u8 _pad;
};

struct gate {
	__u64 start;      /* boot ns the current window opened */
	__u64 suppressed; /* attempts held back in this window */
	struct event ev;  /* the window's first event, for the daemon's sweep */
};
