#!/bin/sh
# Vendors the headers the eBPF programs include, so `make generate` reads no
# system include file and every machine emits the same objects:
#   bpf/           libbpf's program headers, from Debian 12's libbpf-dev
#   linux/, asm-generic/  the kernel UAPI they need, from Debian 12's linux-libc-dev
# The package versions are pinned below; bump them deliberately, run this
# script, regenerate (make generate) and commit headers and objects together.
# asm/ (types.h, posix_types.h, bitsperlong.h) is ours: the BPF target's
# tiny arch layer, mapped onto asm-generic.
set -eu

LIBBPF_VERSION="1:1.1.2-0+deb12u1"
LINUX_LIBC_VERSION="6.1.192-3"

cd "$(dirname "$0")"

check() { # package version
	have=$(dpkg-query -W -f '${Version}' "$1" 2>/dev/null || true)
	if [ "$have" != "$2" ]; then
		echo "update.sh: $1 is '${have:-not installed}', pinned $2: apt-get install $1=$2, or bump the pin" >&2
		exit 1
	fi
}
check libbpf-dev "$LIBBPF_VERSION"
check linux-libc-dev "$LINUX_LIBC_VERSION"

mkdir -p bpf linux asm-generic
for f in bpf_helpers.h bpf_helper_defs.h bpf_endian.h bpf_core_read.h bpf_tracing.h; do
	cp /usr/include/bpf/$f bpf/$f
done
for f in bpf.h bpf_common.h types.h posix_types.h stddef.h; do
	cp /usr/include/linux/$f linux/$f
done
for f in bitsperlong.h int-ll64.h posix_types.h types.h; do
	cp /usr/include/asm-generic/$f asm-generic/$f
done
echo "vendored libbpf-dev $LIBBPF_VERSION and linux-libc-dev $LINUX_LIBC_VERSION headers"
