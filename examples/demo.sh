#!/usr/bin/env bash
# `make demo`: exewall on a scratch cgroup, safe to try on any machine.
#
# It starts a daemon attached to a new, empty cgroup (never the root), with
# its own pin dir, socket and policy file; serves a page on 127.0.0.1; runs
# curl inside the scratch cgroup before and after `exewall deny
# /usr/bin/curl`; shows the violation; and removes everything it created,
# even when interrupted. No other process on the host is judged by it.
#
# usage: bash examples/demo.sh [EXEWALL_BINARY]    (as root)
set -euo pipefail

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

bin=$(realpath "${1:-./bin/exewall}")
[[ -x $bin ]] || die "no exewall binary at $bin: run 'make demo'"
((EUID == 0)) || die "needs root (it loads eBPF programs): sudo make demo"
for c in curl python3; do
	command -v "$c" >/dev/null || die "needs $c: apt-get install -y $c"
done
cgroot=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
[[ -n $cgroot ]] || die "no cgroup v2 mount on this machine"

id=exewall-demo-$$
cg=$cgroot/$id
pins=/sys/fs/bpf/$id
tmp=$(mktemp -d "/tmp/$id.XXXXXX")
export EXEWALL_SOCKET=$tmp/exewall.sock
# `exewall` below is the binary just built.
PATH=$(dirname "$bin"):$PATH
daemon= web=

cleanup() {
	trap - EXIT INT TERM
	say "cleaning up"
	if [[ -n $daemon ]]; then
		kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
		say "  daemon stopped (--detach-on-exit: its programs left the scratch cgroup)"
	fi
	if [[ -n $web ]]; then
		kill "$web" 2>/dev/null && wait "$web" 2>/dev/null || true
		say "  web server stopped"
	fi
	exewall reset --pin-dir "$pins" >/dev/null 2>&1 || true
	[[ -e $pins ]] && say "  pins left in $pins: run 'exewall reset --pin-dir $pins'" || say "  pins removed"
	rmdir "$cg" 2>/dev/null || true
	[[ -e $cg ]] && say "  scratch cgroup $cg left: it still holds processes" || say "  scratch cgroup removed"
	rm -rf "$tmp"
	say "done: nothing of the demo is left on this machine"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run shows a command as typed, then runs it; incg runs it inside the
# scratch cgroup, where the demo's daemon judges it.
run() { printf '$ %s\n' "$*"; "$@" 2>&1 || true; }
incg() { printf '$ %s\n' "$1"; bash -c 'echo $$ >"$0/cgroup.procs" && eval "$1"' "$cg" "$1" 2>&1 || true; }

mkdir "$cg"
say "scratch cgroup $id, pin dir $pins; no other process is affected"
exewall daemon --cgroup "$cg" --pin-dir "$pins" --state-dir "$tmp/state" --policy "$tmp/policy.yaml" \
	--detach-on-exit >"$tmp/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do
	[[ -S $EXEWALL_SOCKET ]] && break
	kill -0 "$daemon" 2>/dev/null || { cat "$tmp/daemon.log" >&2; daemon=; die "the daemon stopped before it was ready (its log is above)"; }
	sleep 0.2
done
[[ -S $EXEWALL_SOCKET ]] || die "the daemon did not start within 20s"
say "daemon running, attached to the scratch cgroup only"

port=
for p in $(seq 18081 18099); do
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue # taken
	python3 -m http.server --bind 127.0.0.1 "$p" >/dev/null 2>&1 &
	web=$!
	for _ in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && port=$p && break 2
		kill -0 "$web" 2>/dev/null || break
		sleep 0.1
	done
	kill "$web" 2>/dev/null || true
	web=
done
[[ -n $port ]] || die "no free port for the web server in 18081-18099"
say "a web server on 127.0.0.1:$port; each curl below runs in the scratch cgroup"
# curl -v names the error connect() returned; grep keeps the lines that
# matter: the server's answer, or the error and curl's own message.
get="curl -sSv -o /dev/null http://127.0.0.1:$port/ 2>&1 | grep -E '^< HTTP|connect fail|^curl:'"

incg "$get"
run exewall deny /usr/bin/curl
incg "$get"
# The event reaches the daemon a moment after the refusal.
for _ in $(seq 20); do
	[[ -n $(exewall violations --json 2>/dev/null) ]] && break
	sleep 0.1
done
run exewall violations
run exewall rm curl
incg "$get"
