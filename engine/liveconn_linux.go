package engine

import (
	"net"
	"syscall"
)

// peerOpen reports whether an idle connection can still carry a request:
// nothing to read yet (EAGAIN). End of stream, an error or unsolicited bytes
// (a late response, a 408 sent before closing) mean it cannot. The peek
// goes through Control, not Read: Read fails, without calling back, once
// the socket's last read deadline has passed. Its callback is made once
// per connection: built per call, it would escape to the heap on every
// request.
func (c *uconn) peerOpen() bool {
	if c.rc == nil {
		return true
	}
	c.peek()
	return c.peekErr == syscall.EAGAIN || c.peekErr == syscall.EINTR
}

// dataWaiting reports whether bytes from the upstream are waiting in the
// socket (more of a response that is arriving).
func (c *uconn) dataWaiting() bool {
	if c.rc == nil {
		return false
	}
	c.peek()
	return c.peekN > 0
}

func (c *uconn) peek() {
	if c.peekFn == nil {
		c.peekFn = func(fd uintptr) {
			c.peekN, _, c.peekErr = syscall.Recvfrom(int(fd), c.peekB[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		}
	}
	c.peekN, c.peekErr = 0, nil
	if err := c.rc.Control(c.peekFn); err != nil {
		c.peekErr = err
	}
}

// connGone reports whether a client has closed or reset its connection (a
// peek sees the end of stream or an error). A client that sent more (a
// pipelined request) is still there. As nginx does, a client that
// half-closed after its request counts as gone. Rare (once a second per
// request waiting on a slow upstream), so it may allocate.
func connGone(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var b [1]byte
	err = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
	})
	return gone || err != nil
}

// sendThenReadOK: a request held whole is sent by the read of its answer
// (uconn.sendThenRead), through sockRead and sockWrite.
const sendThenReadOK = true

func sockRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func sockWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
