//go:build linux

package linux

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelMin is how many items make a second goroutine worth starting.
const parallelMin = 256

// inParallel calls f on consecutive ranges [lo, hi) of chunk items that
// together cover [0, n), on up to four CPUs when n is worth it; it returns
// when every call has.
func inParallel(n, chunk int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/parallelMin+1, 4)
	if workers <= 1 {
		for lo := 0; lo < n; lo += chunk {
			f(lo, min(lo+chunk, n))
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return
				}
				f(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
}
