package dnsproxy

import (
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// BenchmarkForward measures one UDP query's round trip on loopback, asked
// of the server directly and through the forwarder (which puts the answer
// in force through a Learner first), interleaved query by query so both
// see the same machine load. It reports the p50 and p99 of each in µs and
// the difference of the percentiles (what the forwarder adds).
func BenchmarkForward(b *testing.B) {
	srv := startServer(b, func(q dnsmessage.Message) dnsmessage.Message {
		return dnsmessage.Message{Answers: []dnsmessage.Resource{a(q.Questions[0].Name.String(), 300, "192.0.2.1")}}
	})
	p := startProxy(b, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: newLearner()})
	udp4, _, _, _ := p.Addrs()
	direct, err := net.Dial("udp", srv.addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	proxied, err := net.Dial("udp", udp4.String())
	if err != nil {
		b.Fatal(err)
	}
	defer proxied.Close()
	q := query(b, 1, "bench.example.com.", dnsmessage.TypeA)
	buf := make([]byte, maxMsg)
	ask := func(c net.Conn) time.Duration {
		start := time.Now()
		if _, err := c.Write(q); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	d := make([]time.Duration, 0, b.N)
	f := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d = append(d, ask(direct))
		f = append(f, ask(proxied))
	}
	b.StopTimer()
	slices.Sort(d)
	slices.Sort(f)
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	p50, p99 := len(d)/2, len(d)*99/100
	b.ReportMetric(us(d[p50]), "direct-p50-µs")
	b.ReportMetric(us(d[p99]), "direct-p99-µs")
	b.ReportMetric(us(f[p50]), "proxy-p50-µs")
	b.ReportMetric(us(f[p99]), "proxy-p99-µs")
	b.ReportMetric(us(f[p50]-d[p50]), "added-p50-µs")
	b.ReportMetric(us(f[p99]-d[p99]), "added-p99-µs")
}
