//go:build linux

package linux

// The eBPF objects and their Go bindings are generated from ../bpf and
// committed, so `go build` needs no clang. Regenerate with `make generate`
// (Debian 12's clang-14, pinned by name so every machine emits the same bytes).
// Only the headers vendored in ../bpf/headers are read (-nostdinc; see its
// update.sh for their pinned versions).
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" -type event -type counter -type rule_name -type config -type rule -type file_id -type exe_key -type id_key -type dest_key -type bind_key -type bind_val -type dest_entry -type dest_val -type local_key -type path_key -type gate_key -type gate -type sock_owner -type sock_rec -type name_key -type dns_conf -type dns_server -type dns_orig datapath ../bpf/exewall.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" -type fd_id fileid ../bpf/fileid.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" -type exe_name execwatch ../bpf/exec.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" -type held_rec sockets ../bpf/sockets.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" migrate ../bpf/migrate.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" guard ../bpf/guard.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" -type dns_peer -type dns_asker dns ../bpf/dns.c -- -I../bpf/headers -I../bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -tags linux -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -nostdinc" -type in_sock inbound ../bpf/inbound.c -- -I../bpf/headers -I../bpf
