package dnsproxy

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// gatedServer answers names starting with "slow" only once open is
// closed, others at once; got counts the slow queries received.
func gatedServer(t *testing.T, open chan struct{}, got *sync.WaitGroup) netip.AddrPort {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	go func() {
		for {
			buf := make([]byte, maxMsg)
			n, peer, err := u.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			name := m.Questions[0].Name.String()
			slow := strings.HasPrefix(name, "slow")
			if slow {
				got.Done()
			}
			go func() {
				if slow {
					<-open
				}
				m.Response = true
				m.Answers = []dnsmessage.Resource{a(name, 60, "192.0.2.1")}
				out, _ := m.Pack()
				u.WriteToUDPAddrPort(out, peer)
			}()
		}
	}()
	return u.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestSlowUpstreamHoldsNoneUp: queries whose server has not answered yet,
// more of them than the forwarder has workers, do not hold up a query
// that the server answers at once; each is answered once its server does.
func TestSlowUpstreamHoldsNoneUp(t *testing.T) {
	open := make(chan struct{})
	var got sync.WaitGroup
	n := 6 // more than the Linux path has workers (udpWorkers)
	got.Add(n)
	srv := gatedServer(t, open, &got)
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv, true}, Learner: newLearner()})
	udp4, _, _, _ := p.Addrs()
	answers := make(chan string, n)
	for i := range n {
		c, err := net.Dial("udp", udp4.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		name := "slow" + string(rune('a'+i)) + ".test."
		if _, err := c.Write(query(t, uint16(i+1), name, dnsmessage.TypeA)); err != nil {
			t.Fatal(err)
		}
		go func() {
			c.SetDeadline(time.Now().Add(20 * time.Second))
			buf := make([]byte, maxMsg)
			k, err := c.Read(buf)
			if err != nil {
				answers <- "error: " + err.Error()
				return
			}
			ans, err := ParseAnswer(buf[:k])
			if err != nil {
				answers <- "error: " + err.Error()
				return
			}
			answers <- ans.Question
		}()
	}
	got.Wait() // every slow query reached the server, none answered
	fast, err := ParseAnswer(askUDP(t, udp4, query(t, 99, "fast.test.", dnsmessage.TypeA)))
	if err != nil || fast.Question != "fast.test" {
		t.Fatalf("fast answer %+v %v", fast, err)
	}
	select {
	case s := <-answers:
		t.Fatalf("a slow query was answered before its server did: %s", s)
	default:
	}
	close(open)
	seen := map[string]bool{}
	for range n {
		s := <-answers
		if !strings.HasPrefix(s, "slow") || seen[s] {
			t.Errorf("slow answer %q", s)
		}
		seen[s] = true
	}
	if st := p.Stats(); st.Answers != uint64(n+1) || st.Failures != 0 {
		t.Errorf("stats %+v", st)
	}
}
