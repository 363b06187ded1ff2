//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The bench binary re-executes itself (a copy of it, for exewall a file the
// policy names) as the measuring client, inside a scratch cgroup.
const roleEnv = "EXEWALL_BENCH_ROLE"

func isChild() bool {
	r := os.Getenv(roleEnv)
	return r == "client" || r == "listener" || r == inRecvRole
}

// job is what the orchestrator asks a client to do, as JSON on stdin.
type job struct {
	Op       string        `json:"op"` // tcp | udp | sockopt | storm
	Port     int           `json:"port"`
	Batch    int           `json:"batch"`    // operations per timed batch
	Warmup   int           `json:"warmup"`   // untimed operations first
	Budget   time.Duration `json:"budget"`   // stop measuring after this long...
	MaxOps   int           `json:"max_ops"`  // ...or this many operations
	CPU      int           `json:"cpu"`      // pin to this CPU; -1: no pinning
	StartAt  int64         `json:"start_at"` // storm: unix ns to start at
	Duration time.Duration `json:"duration"` // storm: how long
}

// jobResult is the client's answer on stdout.
type jobResult struct {
	MedianNs   float64 `json:"median_ns"`
	P99Ns      float64 `json:"p99_ns"`
	MeanNs     float64 `json:"mean_ns"`
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Attempts   uint64  `json:"attempts"`
	EPERM      uint64  `json:"eperm"`
	Seconds    float64 `json:"seconds"`
}

func childMain() int {
	if os.Getenv(roleEnv) == "listener" {
		return listenerMain()
	}
	if os.Getenv(roleEnv) == inRecvRole {
		return inRecvMain() // inbound_linux.go
	}
	var j job
	if err := json.NewDecoder(os.Stdin).Decode(&j); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 2
	}
	debug.SetGCPercent(-1) // no collection inside the timed loop
	runtime.LockOSThread()
	if j.CPU >= 0 {
		var set unix.CPUSet
		set.Set(j.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fmt.Fprintln(os.Stderr, "client: pin to cpu:", err)
		}
	}
	var res jobResult
	var err error
	switch j.Op {
	case "tcp", "udp", "sockopt":
		res, err = measure(j)
	case "storm":
		res, err = storm(j)
	default:
		err = fmt.Errorf("unknown op %q", j.Op)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

func loopback(port int) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return sa
}

// unspec is the address that disconnects a TCP socket (connect with
// AF_UNSPEC).
var unspec = unix.RawSockaddrInet4{Family: unix.AF_UNSPEC}

// tcpOnce is the measured TCP operation: socket, connect, close. Before the
// close, connect(AF_UNSPEC) disconnects: the kernel sends a reset and the
// socket leaves no TIME_WAIT behind (which would exhaust the ephemeral
// ports within a second at this rate). It does what SO_LINGER 0 did without
// a setsockopt call, which is no part of a connect (and which a
// cgroup/setsockopt program would be charged for). The packets are the same:
// SYN, ACK, RST. Raw syscalls keep Go's scheduler hooks out of the timing
// (the client has one goroutine, so a blocking call stalls nothing else).
func tcpOnce(sa *unix.RawSockaddrInet4) unix.Errno {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return e
	}
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(sa)), unsafe.Sizeof(*sa))
	if e == 0 {
		unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec))
	}
	unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
	return e
}

var one = int32(1)

// sockoptOnce is one setsockopt(SO_KEEPALIVE) on a TCP socket: what a
// cgroup/setsockopt program costs every such call of every process.
func sockoptOnce(fd uintptr) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE,
		uintptr(unsafe.Pointer(&one)), unsafe.Sizeof(one), 0)
	return e
}

var payload [16]byte

func udpOnce(fd uintptr, sa *unix.RawSockaddrInet4) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&payload[0])), uintptr(len(payload)), 0,
		uintptr(unsafe.Pointer(sa)), unsafe.Sizeof(*sa))
	return e
}

func measure(j job) (jobResult, error) {
	var res jobResult
	sa := loopback(j.Port)
	var udpFD uintptr
	if j.Op == "udp" || j.Op == "sockopt" {
		typ := unix.SOCK_DGRAM
		if j.Op == "sockopt" {
			typ = unix.SOCK_STREAM
		}
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return res, err
		}
		defer unix.Close(fd)
		udpFD = uintptr(fd)
	}
	once := func() unix.Errno {
		switch j.Op {
		case "tcp":
			return tcpOnce(&sa)
		case "sockopt":
			return sockoptOnce(udpFD)
		}
		return udpOnce(udpFD, &sa)
	}
	note := func(e unix.Errno) {
		res.Errors++
		if res.FirstError == "" {
			res.FirstError = unix.ErrnoName(e) + ": " + e.Error()
		}
	}
	for i := 0; i < j.Warmup; i++ {
		if e := once(); e != 0 {
			note(e)
		}
	}
	batch := max(j.Batch, 1)
	samples := make([]float64, 0, j.MaxOps/batch+1)
	start := time.Now()
	deadline := start.Add(j.Budget)
	for res.Ops < j.MaxOps {
		t0 := time.Now()
		if t0.After(deadline) {
			break
		}
		for i := 0; i < batch; i++ {
			if e := once(); e != 0 {
				note(e)
			}
		}
		samples = append(samples, float64(time.Since(t0).Nanoseconds())/float64(batch))
		res.Ops += batch
	}
	res.Seconds = time.Since(start).Seconds()
	res.MedianNs = median(samples)
	res.P99Ns = percentile(samples, 0.99)
	var sum float64
	for _, s := range samples {
		sum += s
	}
	if len(samples) > 0 {
		res.MeanNs = sum / float64(len(samples))
	}
	return res, nil
}

// storm makes denied connects as fast as one thread can: connect() on one
// UDP socket, which the connect4 hook refuses with EPERM every time.
func storm(j job) (jobResult, error) {
	var res jobResult
	sa := loopback(j.Port)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return res, err
	}
	defer unix.Close(fd)
	if d := time.Until(time.Unix(0, j.StartAt)); d > 0 {
		time.Sleep(d)
	}
	start := time.Now()
	deadline := start.Add(j.Duration)
	for {
		for i := 0; i < 256; i++ {
			_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
			res.Attempts++
			switch e {
			case unix.EPERM:
				res.EPERM++
			case 0:
				res.Errors++
				if res.FirstError == "" {
					res.FirstError = "connect allowed: the storm rule is not in force"
				}
			default:
				res.Errors++
				if res.FirstError == "" {
					res.FirstError = unix.ErrnoName(e)
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// listenerMain is the loopback peer of every measurement, a process of its
// own so that nothing the orchestrator loads (backends, their goroutines)
// shares its scheduler: a TCP listener that accepts and closes, and a UDP
// socket that never reads (datagrams past its small buffer are dropped; the
// sender's cost is the same). It prints both ports, then serves until killed.
func listenerMain() int {
	runtime.LockOSThread()
	if cpu, err := strconv.Atoi(os.Getenv("EXEWALL_BENCH_CPU")); err == nil && cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		unix.SchedSetaffinity(0, &set)
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(lfd, lo); err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	unix.SetsockoptInt(ufd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	if err := unix.Bind(ufd, lo); err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	tsa, _ := unix.Getsockname(lfd)
	usa, _ := unix.Getsockname(ufd)
	fmt.Printf("%d %d\n", tsa.(*unix.SockaddrInet4).Port, usa.(*unix.SockaddrInet4).Port)
	os.Stdout.Close()
	// While connections arrive the listener spins on a non-blocking accept,
	// so no connect ever has to wake it (in a VM that is an inter-processor
	// interrupt, microseconds and noisy, charged to the client's connect).
	// After 20 ms without a connection it sleeps in poll.
	unix.SetNonblock(lfd, true)
	last := time.Now()
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			unix.Close(fd)
			last = time.Now()
		case err == unix.EAGAIN && time.Since(last) > 20*time.Millisecond:
			unix.Poll([]unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}, -1)
			last = time.Now()
		}
	}
}
