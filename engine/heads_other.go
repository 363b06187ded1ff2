//go:build !linux

package engine

// eachHead calls f with the start of each of files (up to binprmBufSize
// bytes, valid during the call) or why it could not be read, from several
// goroutines at once.
func eachHead(files []string, f func(k int, head []byte, err error)) {
	eachHeadReading(files, f)
}
