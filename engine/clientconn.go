package engine

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// Client connections: an answer and the wait for the next request in one
// pass.
//
// After writing an answer, the server reads for the next request; on a
// keep-alive connection that read almost always finds nothing yet
// (EAGAIN) before the goroutine parks: one system call per request that
// nginx, driving epoll itself, does not make. The Go runtime forgets a
// socket's readiness at the start of each Read, so the read cannot just be
// skipped: bytes that arrived before it would never wake the reader. What
// can be done is to send the answer after that reset, inside the read:
// then the next request of a client that waits for its answer arrives
// after the reset and always wakes the reader.
//
// So the handler arms the connection (armWriteBehind) when its answer is
// complete in memory and the connection stays open; the server's single
// write of that answer is then kept (up to the server's write buffer) and
// sent by the next Read, which goes straight to the poller. Anything else
// done with the connection first (another write, closing, half-closing,
// the next request's handler on a pipelined connection) sends the kept
// answer first. A pipelining client whose next request arrived between
// the server's last read and that reset would not wake the reader: the
// read deadline is cut to pipelineGuard while an answer is kept, and when
// it fires the read is made the ordinary way, so such a request waits
// pipelineGuard at most.

// Deadlines: the server sets a read deadline before waiting for a
// request, another once its first byte is in, and a write deadline before
// each answer; each is a timer update in the runtime. An answer kept for
// the next read is sent by a non-blocking write that cannot wait, and a
// request usually arrives whole in one read, so most of those deadlines
// never guard anything. They are kept here and put on the socket just
// before a call that can wait for it (a socket read, an ordinary write),
// always as the absolute time the server asked for. The guard of a kept
// answer (below) set by an earlier request stays while it has at least
// half its time left: it may then fire up to pipelineGuard/2 sooner, which
// only makes the ordinary read happen sooner.

// strConnClose is how the server writes an answer's Connection: close.
var (
	strConnClose = []byte("\r\nConnection: close\r\n")
	strCRLFCRLF  = []byte("\r\n\r\n")
)

const (
	pipelineGuard = 100 * time.Millisecond
	keepMax       = serverWriteBuffer // the server writes a buffered answer at most this big at once
)

// Listener returns ln whose TCP connections answer and read as above. Serve
// the engine's server (NewServer) from it; other listeners' connections
// work as before.
func Listener(ln net.Listener) net.Listener {
	if !sendThenReadOK {
		return ln
	}
	return clientListener{ln}
}

type clientListener struct{ net.Listener }

func (l clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	cc := &clientConn{TCPConn: tc, rc: rc}
	cc.sr.afterSend = cc.answerOut
	return cc, nil
}

// clientConn is a client's TCP connection that can keep an answer for its
// next Read. The server uses it from one goroutine; Close may come from
// another (shutdown), so the kept answer is taken atomically.
type clientConn struct {
	*net.TCPConn
	rc syscall.RawConn

	closing bool // the request being handled asked for the connection's end
	armed   bool // the next Write is a whole answer: keep it
	body    int  // ... whose body is this long
	kept    atomic.Pointer[pool.Buffer]
	wantRD  time.Time // the read deadline the server asked for last
	cutRD   bool      // the socket's read deadline is cut to pipelineGuard
	setCut  bool      // ... by the server's own SetReadDeadline, after the answer was kept
	rdLazy  bool      // wantRD is not on the socket yet: the next socket read puts it there
	sockRD  time.Time // the read deadline on the socket

	// The write deadline the server asked for last (Unix nanoseconds, 0
	// for none; atomic for Close, which may come from another goroutine)
	// and whether the socket has it: it is put there before a write that
	// can wait, not on every request (see Deadlines above).
	wantWD atomic.Int64
	wdLazy atomic.Bool
	dlSets atomic.Int32 // deadlines put on the socket (tests count them)

	sr sendRead

	// Shutdown closes connections the server counts as idle, which with a
	// kept answer may still be sending it: busy while Read holds an
	// answer not yet all sent; a Close meanwhile only asks (closeReq), and
	// Read closes once the answer is out (stopped: it did).
	busy     atomic.Bool
	closeReq atomic.Bool
	stopped  bool
}

// armWriteBehind marks the answer being finished as complete in memory on
// a connection that stays open: neither the request (as it came: the
// handler strips its Connection header, HTTP/1.0 without keep-alive
// included) nor the answer ends it.
func armWriteBehind(ctx *fasthttp.RequestCtx) {
	if cc, ok := ctx.Conn().(*clientConn); ok && !cc.closing && !ctx.Hijacked() &&
		!ctx.Response.IsBodyStream() && !ctx.Response.ConnectionClose() {
		cc.armed = true
		cc.body = len(ctx.Response.Body())
		if ctx.Response.SkipBody || ctx.Request.Header.IsHead() {
			cc.body = 0
		}
	}
}

// sendKeptOf sends what ctx's connection keeps, before a pipelined
// request is handled (its handler may take long), and notes whether the
// request ends the connection.
func sendKeptOf(ctx *fasthttp.RequestCtx) {
	if cc, ok := ctx.Conn().(*clientConn); ok {
		cc.armed = false
		cc.closing = ctx.Request.Header.ConnectionClose()
		if cc.kept.Load() != nil {
			cc.sendKept() //nolint:errcheck // the next read or write sees a dead conn
		}
	}
}

func (c *clientConn) take() *pool.Buffer { return c.kept.Swap(nil) }

// sendKept writes the kept answer the ordinary way (with the write
// deadline) and restores the read deadline it cut.
func (c *clientConn) sendKept() error {
	b := c.take()
	if b == nil {
		return nil
	}
	_, err := c.write(b.B)
	pool.Scratch.Put(b)
	if derr := c.restoreRD(); err == nil {
		err = derr
	}
	return err
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.kept.Load() != nil {
		if err := c.sendKept(); err != nil {
			return 0, err
		}
	}
	if c.armed {
		c.armed = false
		// An answer marked as the last is not kept: the server closes
		// right after it, and counts the connection closed before that.
		if len(p) <= keepMax && !bytes.Contains(answerHead(p, c.body), strConnClose) {
			b := pool.Scratch.Get()
			b.B = append(b.B[:0], p...)
			c.kept.Store(b)
			return len(p), nil
		}
	}
	return c.write(p)
}

// answerHead returns the header block of p when p is one answer with a
// body of n bytes, else all of p: the part the server could have marked
// Connection: close.
func answerHead(p []byte, n int) []byte {
	if i := bytes.Index(p, strCRLFCRLF); i >= 0 && i+4+n == len(p) {
		return p[:i+2]
	}
	return p
}

// SetReadDeadline records the deadline the server asks for, which a kept
// answer's read puts back however it ends.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.wantRD, c.cutRD, c.setCut = t, false, false
	if c.kept.Load() == nil {
		c.rdLazy = !t.Equal(c.sockRD)
		return nil
	}
	c.setCut = true
	return c.cutDeadline()
}

// setRD puts read deadline t on the socket.
func (c *clientConn) setRD(t time.Time) error {
	c.sockRD = t
	c.dlSets.Add(1)
	return c.TCPConn.SetReadDeadline(t)
}

// SetWriteDeadline records the write deadline the server asks for; writes
// that can wait put it on the socket first (applyWD).
func (c *clientConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.wantWD.Store(ns)
	c.wdLazy.Store(true)
	return nil
}

// applyWD puts the write deadline the server asked for on the socket, if
// it is not there yet.
func (c *clientConn) applyWD() error {
	if !c.wdLazy.Swap(false) {
		return nil
	}
	var t time.Time
	if ns := c.wantWD.Load(); ns != 0 {
		t = time.Unix(0, ns)
	}
	c.dlSets.Add(1)
	return c.TCPConn.SetWriteDeadline(t)
}

// write is an ordinary write, under the server's write deadline.
func (c *clientConn) write(p []byte) (int, error) {
	if err := c.applyWD(); err != nil {
		return 0, err
	}
	return c.TCPConn.Write(p)
}

// ReadFrom and WriteTo, which the embedded connection would serve
// directly, keep the order and the deadlines of Write and Read.
func (c *clientConn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.sendKept(); err != nil {
		return 0, err
	}
	if err := c.applyWD(); err != nil {
		return 0, err
	}
	return c.TCPConn.ReadFrom(r)
}

func (c *clientConn) WriteTo(w io.Writer) (int64, error) {
	if err := c.sendKept(); err != nil {
		return 0, err
	}
	if err := c.applyRD(); err != nil {
		return 0, err
	}
	return c.TCPConn.WriteTo(w)
}

// cutDeadline sets the socket's read deadline to pipelineGuard from now,
// or the server's if that comes first.
func (c *clientConn) cutDeadline() error {
	c.cutRD, c.rdLazy = true, false
	now := time.Now()
	g := now.Add(pipelineGuard)
	if t := c.wantRD; !t.IsZero() && !g.Before(t) {
		return c.setRD(t)
	}
	if !c.sockRD.After(g) && c.sockRD.After(now.Add(pipelineGuard/2)) {
		return nil // an earlier guard with half its time left stays
	}
	return c.setRD(g)
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *clientConn) Read(p []byte) (int, error) {
	if c.kept.Load() == nil {
		// The server's deadline, left cut by the last pass or not yet on
		// the socket, is put there before the socket is read.
		if err := c.applyRD(); err != nil {
			return 0, err
		}
		return c.TCPConn.Read(p)
	}
	if !c.cutRD {
		// The server's deadline was set before the answer was kept (a
		// pipelined request being read): cut it now.
		if err := c.cutDeadline(); err != nil {
			return 0, err
		}
	}
	c.busy.Store(true)
	out := c.take()
	if out == nil { // Close took it
		c.busy.Store(false)
		if err := c.applyRD(); err != nil {
			return 0, err
		}
		return c.TCPConn.Read(p)
	}
	c.stopped = false
	n, unsent, sent, err := c.sr.run(c.rc, "tcp", out.B, p)
	if !sent {
		// The socket took part of it (a slow reader), the read deadline
		// had already passed, or the write failed: the rest goes the
		// ordinary way, under the write deadline, unless the write failed.
		if errno, ok := err.(syscall.Errno); !ok || errno == syscall.EAGAIN {
			start := time.Now()
			_, err = c.write(unsent)
			if c.setCut && !c.wantRD.IsZero() {
				// The server set that deadline after it wrote the answer
				// (its wait for the next request): it starts once the
				// answer is out, as without keeping.
				c.wantRD = c.wantRD.Add(time.Since(start))
			}
		} else {
			err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
		}
		pool.Scratch.Put(out)
		c.busy.Store(false)
		if c.closeReq.Load() {
			c.TCPConn.Close()
			return 0, net.ErrClosed
		}
		if derr := c.applyRD(); err == nil {
			err = derr
		}
		if err != nil {
			return 0, err
		}
		return c.TCPConn.Read(p)
	}
	pool.Scratch.Put(out)
	if c.stopped {
		c.TCPConn.Close()
		return 0, net.ErrClosed
	}
	if err != nil && isTimeout(err) && c.cutRD && (c.wantRD.IsZero() || time.Now().Before(c.wantRD)) {
		// The guard fired before the deadline asked for: read the
		// ordinary way, which sees bytes a wake-up may have missed.
		if err := c.applyRD(); err != nil {
			return 0, err
		}
		return c.TCPConn.Read(p)
	}
	// The read found the next request, or part of one, or the end. The
	// server's deadline goes on the socket before its next read (it may be
	// in the middle of a header or a body), unless the server sets a new
	// one first, as it does once a request has begun.
	return n, err
}

// restoreRD puts back the read deadline the server asked for, if a guard
// cut it.
func (c *clientConn) restoreRD() error {
	if !c.cutRD {
		return nil
	}
	c.cutRD, c.rdLazy = false, false
	return c.setRD(c.wantRD)
}

// applyRD puts the read deadline the server asked for on the socket, if
// it is not there: cut by a guard or not yet set.
func (c *clientConn) applyRD() error {
	if !c.cutRD && !c.rdLazy {
		return nil
	}
	c.cutRD, c.rdLazy = false, false
	return c.setRD(c.wantRD)
}

func (c *clientConn) CloseWrite() error {
	if err := c.sendKept(); err != nil {
		return err
	}
	return c.TCPConn.CloseWrite()
}

// answerOut runs inside the read pass once the kept answer is all sent:
// it ends the pass when a Close came meanwhile.
func (c *clientConn) answerOut() bool {
	c.busy.Store(false)
	if c.closeReq.Load() {
		c.stopped = true
		return true
	}
	return false
}

// Close sends a kept answer first, under the write deadline the server set
// for it; while Read is sending one, it leaves the closing to Read, once
// the answer is out (see busy).
func (c *clientConn) Close() error {
	c.closeReq.Store(true)
	if b := c.take(); b != nil {
		c.write(b.B) //nolint:errcheck // closing anyway
		pool.Scratch.Put(b)
		return c.TCPConn.Close()
	}
	if c.busy.Load() {
		return nil
	}
	return c.TCPConn.Close()
}
