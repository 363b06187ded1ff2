package engine

import (
	"bytes"
	"compress/flate"
	"hash/maphash"
	"io"
)

// policyText is the text of the policy file in force. It is kept (a
// deleted file is written back from it, and an edit made while the file on
// disk is broken starts from it, comments and all), but compressed when it
// is large: 100,000 rules are 12 MB of text and 1 MB packed (flate at its
// fastest: 35 ms to pack, 43 ms to unpack). Only an edit, a rollback or a
// deleted file unpacks it.
//
// An edit keeps the scan of the text it wrote (policyedit.go), which holds
// that text whole: later edits need neither unpack nor scan it again.
type policyText struct {
	raw    []byte // the text, when small
	packed []byte // the text compressed, when large
	sum    textSum
	size   int
	scan   *scannedText // the scan of the text, when an edit made it
}

// packAbove is the size from which the text is kept compressed.
const packAbove = 64 << 10

// textSum tells texts apart: two seeded 64-bit hashes (a change is
// detected, not defended against: whoever writes the file is root).
type textSum [2]uint64

var textSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func sumText(data []byte) textSum {
	return textSum{maphash.Bytes(textSeeds[0], data), maphash.Bytes(textSeeds[1], data)}
}

// set makes data the text in force. The caller no longer changes data.
func (t *policyText) set(data []byte) {
	*t = policyText{sum: sumText(data), size: len(data), raw: data}
	if len(data) <= packAbove {
		return
	}
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestSpeed)
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil { // (else it stays as it is)
		t.raw, t.packed = nil, bytes.Clone(b.Bytes())
	}
}

// setScanned is set for the text an edit wrote and scanned: the scan keeps
// it.
func (t *policyText) setScanned(sc *scannedText) {
	*t = policyText{sum: sumText(sc.src), size: len(sc.src), scan: sc}
}

// same reports whether data is the text in force.
func (t *policyText) same(data []byte) bool {
	return len(data) == t.size && sumText(data) == t.sum
}

// read returns the text in force.
func (t *policyText) read() ([]byte, error) {
	switch {
	case t.scan != nil:
		return t.scan.src, nil
	case t.packed == nil:
		return t.raw, nil
	}
	data := make([]byte, 0, t.size)
	buf := bytes.NewBuffer(data)
	if _, err := io.Copy(buf, flate.NewReader(bytes.NewReader(t.packed))); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
