package engine

// eachHeadReading is eachHead by plain reads: readHead on up to
// readersAtOnce files at a time.
func eachHeadReading(files []string, f func(k int, head []byte, err error)) {
	eachUpToReaders(len(files), func(k int) {
		var buf [binprmBufSize]byte
		n, err := readHead(files[k], buf[:])
		f(k, buf[:n], err)
	})
}
