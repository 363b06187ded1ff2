package dnsproxy

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// BenchmarkForward measures one UDP query's round trip on loopback, asked
// of the server directly and through the forwarder (which learns the answer
// into a fake Learner first), and reports the p50 and p99 in µs.
func BenchmarkForward(b *testing.B) {
	srv := startServer(b, func(q dnsmessage.Message) dnsmessage.Message {
		return dnsmessage.Message{Answers: []dnsmessage.Resource{a(q.Questions[0].Name.String(), 300, "192.0.2.1")}}
	})
	p := startProxy(b, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: newLearner()})
	udp4, _, _, _ := p.Addrs()
	for _, bc := range []struct {
		name string
		to   netip.AddrPort
	}{{"direct", srv.addr}, {"proxy", udp4}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := net.Dial("udp", bc.to.String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			q := query(b, 1, "bench.example.com.", dnsmessage.TypeA)
			buf := make([]byte, maxMsg)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := c.Write(q); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
