package engine

import (
	"io"
	"net"
	"os"
	"syscall"
)

// sendRead sends bytes and reads what answers them in one pass of
// RawConn.Read: the write happens after the runtime has reset the
// socket's readiness, so an answer's arrival cannot be missed, and the
// read that a write then Read makes and that finds nothing yet is not
// made. Upstream requests (uconn.sendThenRead) and answers to keep-alive
// clients (clientconn.go) go out this way on Linux.
type sendRead struct {
	fn   func(fd uintptr) bool // step, made once
	out  []byte                // still to send
	sent bool
	// afterSend, when set, runs once everything is sent; true ends the
	// pass there, without reading (run reports sent, n 0, err nil).
	afterSend func() bool
	p         []byte
	n         int
	werr      error // the write's: EAGAIN when the socket took only part
	rerr      error
}

// run sends out, then reads into p. When sent is false, unsent is what the
// socket did not take and err why: EAGAIN (a full send buffer; the caller
// finishes the write its own way, then reads), a write's errno, or the
// poller's error. Otherwise n and err are the read's, as net.Conn.Read
// reports them.
func (s *sendRead) run(rc syscall.RawConn, network string, out, p []byte) (n int, unsent []byte, sent bool, err error) {
	if s.fn == nil {
		s.fn = s.step
	}
	s.out, s.sent, s.p, s.n, s.werr, s.rerr = out, false, p, 0, nil, nil
	perr := rc.Read(s.fn)
	unsent, sent = s.out, s.sent
	s.out, s.p = nil, nil
	switch {
	case !sent && s.werr != nil:
		return 0, unsent, false, s.werr
	case !sent:
		return 0, unsent, false, perr
	case perr != nil:
		return 0, nil, true, perr
	case s.rerr != nil:
		return 0, nil, true, &net.OpError{Op: "read", Net: network, Err: os.NewSyscallError("read", s.rerr)}
	case s.n == 0 && len(p) > 0:
		return 0, nil, true, io.EOF
	}
	return s.n, nil, true, nil
}

func (s *sendRead) step(fd uintptr) bool {
	if !s.sent {
		for len(s.out) > 0 {
			n, err := sockWrite(fd, s.out)
			if n > 0 {
				s.out = s.out[n:]
			}
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				s.werr = err
				return true
			}
		}
		s.sent = true
		if s.afterSend != nil && s.afterSend() {
			return true
		}
		return false // sent: wait for the answer
	}
	for {
		n, err := sockRead(fd, s.p)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return false
		}
		s.n, s.rerr = max(n, 0), err
		return true
	}
}
