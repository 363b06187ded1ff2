//go:build unix

package engine

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"
)

// readHead reads the start of file into buf with one read, as exec does
// (a regular file reads short only at its end): an open, a read and a
// close, without what an *os.File adds (a poller registration), for a
// daemon that reads every executable of its policy at start. It does not
// wait on a FIFO.
func readHead(file string, buf []byte) (int, error) {
	fd, err := openHead(file)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return readHeadFD(fd, file, buf)
}

// openHead opens file for readHead.
func openHead(file string) (int, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK
	fd, err := unix.Open(file, flags|headNoATime, 0)
	if errors.Is(err, unix.EPERM) && headNoATime != 0 {
		fd, err = unix.Open(file, flags, 0) // not its owner, no CAP_FOWNER
	}
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: file, Err: err}
	}
	return fd, nil
}

// readHeadFD is readHead's read, of fd open on file.
func readHeadFD(fd int, file string, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: file, Err: err}
		}
		return n, nil
	}
}
