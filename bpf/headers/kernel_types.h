/* Minimal CO-RE declarations of the kernel structures exewall reads. Only the
 * fields we use are declared; preserve_access_index lets libbpf/cilium relocate
 * their offsets against the running kernel's BTF, so no full vmlinux.h is
 * needed (and none drifts between kernels). */
#pragma once

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct super_block {
	__u32 s_dev; /* dev_t */
};

struct inode {
	unsigned long i_ino;
	__u32 i_generation;
	struct super_block *i_sb;
};

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
};

struct path {
	void *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
};

struct mm_struct {
	struct file *exe_file;
	unsigned long start_code;
};

struct vm_area_struct {
	struct file *vm_file;
};

struct address_space {
	struct inode *host;
};

struct task_struct {
	unsigned int flags; /* PF_* */
	struct mm_struct *mm;
	__s32 pid;
	__s32 tgid;
	struct task_struct *group_leader;
	__u64 start_time;   /* monotonic ns at fork: with pid, names one thread */
	__u64 self_exec_id; /* incremented by every exec of the thread */
};

struct linux_binprm {
	struct file *file;
	const char *filename; /* the name given to execve */
	const char *interp; /* the file really executed (a script's interpreter) */
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
};

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
};

struct udp_sock; /* begins with struct sock (via inet_sock): read it as one */

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
	__u32 uid;
	int bucket;
};

#pragma clang attribute pop
