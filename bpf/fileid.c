// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Resolves executables to the identity the datapath reads: userspace opens
 * each file, then this iterator reports f_inode of those fds exactly as
 * exewall.c reads exe_file->f_inode (overlayfs, btrfs and friends included,
 * where stat() can disagree). */
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "kernel_types.h"
#include "exewall.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct fd_id {
	__u32 fd;
	__u32 _pad;
	struct file_id id;
};

const struct fd_id *unused_fd_id __attribute__((unused));

SEC("iter/task_file")
int exewall_fileid(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	/* Only the files of the process reading the iterator (the daemon). */
	__u32 reader = bpf_get_current_pid_tgid() >> 32;
	struct file *file = ctx->file;
	if (!task || !file || task->tgid != reader || task->pid != reader)
		return 0;
	struct inode *inode = file->f_inode;
	struct fd_id rec = {
		.fd = ctx->fd,
		.id = {
			.dev = inode->i_sb->s_dev,
			.igen = inode->i_generation,
			.ino = inode->i_ino,
		},
	};
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
