// Package uring is the little of io_uring that exewall needs: many reads
// submitted in one system call. The kernel then issues the disk reads of
// many small files together, under one block plug, where reads of adjacent
// blocks merge. Reading the first bytes of 100,000 small files, written
// one after the other and then dropped from the page cache, took 3.6-4.0 s
// with 16 threads reading one file at a time, and 0.8-1.2 s with two
// threads handing a ring 128 reads at a time (a throwaway program on this
// project's 2-CPU VM); a daemon starting on them became READY in 3.4-3.7 s
// instead of 6.8 s.
//
// Written here rather than taken from a library: golang.org/x/sys/unix has
// no io_uring, and the Go io_uring libraries are whole ports of liburing,
// far more than the one operation used here.
package uring
