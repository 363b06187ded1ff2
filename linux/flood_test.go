//go:build linux

package linux

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestFloodKeepsEveryonesEvidence is issue 13 item 9 against the kernel: an
// unprivileged process (uid 65534) sends to a new denied destination each
// time for two seconds; the event of another program denied just before,
// and the flooder's own first event, are still in the window afterwards, and
// status says a flood was folded.
func TestFloodKeepsEveryonesEvidence(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte("default: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := engine.NewManager(engine.ManagerConfig{Backend: b.Backend, PolicyFile: path, RollbackFile: filepath.Join(dir, "rollback.yaml"), Window: 2000})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	pub := publicDir(t)
	quiet, flooder := clientCopy(t, pub, "quiet"), clientCopy(t, pub, "flooder")
	port := listenLoopback(t)
	_, out := runClient(t, quiet, cg, []attempt{{Proto: "tcp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: port}})
	if !out[0].denied() {
		t.Fatalf("quiet's connect under default deny: %+v", out[0])
	}
	res := runAttacker(t, flooder, cg, "", "flood", []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=0"}, false, nil)
	sent, _ := strconv.Atoi(res["sent"])
	var st engine.Status
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, _ = m.Status(context.Background())
		if st.ViolationsFolded > 0 {
			break
		}
	}
	vs := m.Violations(time.Time{})
	var quietSeen, flooderEvents, summaries int
	for _, v := range vs {
		switch v.Exe {
		case quiet:
			quietSeen++
		case flooder:
			flooderEvents++
			if v.Folded > 0 {
				summaries++
			}
		}
	}
	t.Logf("flooder sent %d; window %d events (%d of the flooder's, %d summaries); folded %d", sent, len(vs), flooderEvents, summaries, st.ViolationsFolded)
	if sent < 10000 {
		t.Fatalf("the flood was too small to prove anything: %d sends", sent)
	}
	if quietSeen == 0 {
		t.Errorf("the flood washed the other program's event out of the window")
	}
	if flooderEvents == 0 || st.ViolationsFolded == 0 || summaries == 0 {
		t.Errorf("the flood was not folded: %d events of the flooder kept, %d folded, %d summaries", flooderEvents, st.ViolationsFolded, summaries)
	}
}
