//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestManagedPolicy runs the daemon where its policy directory is
// read-only, as with a Kubernetes ConfigMap. Root writes anything on a
// writable file system, so the daemon gets its own mount namespace with
// the directory bind-mounted read-only; the host's view stays writable,
// standing in for the config-management tool that owns the file.
func TestManagedPolicy(t *testing.T) {
	lookPath(t, "unshare")
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	etc := filepath.Dir(w.policy)
	os.MkdirAll(etc, 0o755)
	os.WriteFile(w.policy, []byte("rules:\n  - name: client\n    exe: "+client+"\n    action: deny\n"), 0o644)
	w.wrap = []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind -o ro "$0" "$0" && exec "$@"`, etc}
	w.start()

	w.wantVerdict(client, port, "EPERM")
	before, _ := os.ReadFile(w.policy)
	msg := w.refused("deny", "/usr/bin/curl")
	if !strings.Contains(msg, "managed") {
		t.Errorf("refusal does not say the policy is managed: %q", msg)
	}
	w.refused("default", "deny")
	if after, _ := os.ReadFile(w.policy); string(after) != string(before) {
		t.Fatal("policy file changed")
	}
	var st engine.Status
	json.Unmarshal([]byte(w.ok("status", "--json")), &st)
	if !st.Managed {
		t.Errorf("status does not say managed: %+v", st)
	}

	// The owner replaces the file (by rename, as tools do): followed.
	tmp := filepath.Join(etc, ".policy.yaml.new")
	os.WriteFile(tmp, []byte("rules: []\n"), 0o644)
	os.Rename(tmp, w.policy)
	deadline := time.Now().Add(5 * time.Second)
	for len(w.rules()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("managed daemon did not follow the file")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.wantVerdict(client, port, "ok")
}
