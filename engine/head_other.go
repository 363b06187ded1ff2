//go:build !unix

package engine

import (
	"errors"
	"io"
	"os"
)

// readHead reads the start of file into buf (see head_unix.go).
func readHead(file string, buf []byte) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
