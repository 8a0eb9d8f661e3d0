package engine

import (
	"syscall"

	"github.com/valyala/fasthttp"
)

// peerOpen reports whether an idle connection can still carry a request:
// nothing to read yet (EAGAIN). End of stream, an error or unsolicited bytes
// (a late response, a 408 sent before closing) mean it cannot. The peek's
// callback is made once per connection: built per call, it would escape to
// the heap on every request.
func (c *uconn) peerOpen() bool {
	if c.rc == nil {
		return true
	}
	if c.peekFn == nil {
		c.peekFn = func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), c.peekB[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			c.peekOK = n <= 0 && (err == syscall.EAGAIN || err == syscall.EINTR)
			return true
		}
	}
	c.peekOK = false
	err := c.rc.Read(c.peekFn)
	return c.peekOK && err == nil
}

// clientGone reports whether the client of ctx has closed or reset its
// connection (a peek sees the end of stream or an error). A client that
// sent more (a pipelined request) is still there. As nginx does, a client
// that half-closed after its request counts as gone.
func clientGone(ctx *fasthttp.RequestCtx) bool {
	sc, ok := ctx.Conn().(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
		return true
	})
	return gone || err != nil
}
