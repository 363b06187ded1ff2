//go:build linux

package linux

import "testing"

// TestSlotNamesViewKeepsWhatItSaw: a name snapshot's view of the slot names
// is what they were when it was taken, whatever is named, renamed or
// forgotten after (a failed apply giving its slots back included), and the
// names themselves follow every change.
func TestSlotNamesViewKeepsWhatItSaw(t *testing.T) {
	var s slotNames
	s.set(1, "curl")
	s.set(3, "wget")
	v := s.view()
	s.set(1, "ssh")     // a slot handed again
	s.del(3)            // an undone slot
	s.set(70000, "far") // grows
	for slot, want := range map[uint32]string{1: "curl", 2: "", 3: "wget", 70000: ""} {
		if got, ok := v.get(slot); got != want || ok != (want != "") {
			t.Errorf("view: slot %d names %q (%v), want %q", slot, got, ok, want)
		}
	}
	for slot, want := range map[uint32]string{1: "ssh", 2: "", 3: "", 70000: "far", 80000: ""} {
		if got := s.name(slot); got != want {
			t.Errorf("now: slot %d names %q, want %q", slot, got, want)
		}
	}
	v2 := s.view()
	s.set(2, "nc")
	if got, _ := v2.get(2); got != "" {
		t.Errorf("a second view sees a later name: %q", got)
	}
}
