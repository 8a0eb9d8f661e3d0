package engine

import "syscall"

// peerOpen reports whether an idle connection can still carry a request:
// nothing to read yet (EAGAIN). End of stream, an error or unsolicited bytes
// (say, a 408 sent before closing) mean it cannot.
func peerOpen(rc syscall.RawConn) bool {
	open := true
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n <= 0 && (err == syscall.EAGAIN || err == syscall.EINTR)
		return true
	})
	return open && err == nil
}
