package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// An upstream is the connection pool of one destination address with one set
// of client options. vkp speaks HTTP/1.1 to upstreams with its own small
// client rather than fasthttp's HostClient, because a proxy must decide
// things HostClient decides for it (doc.go, "Upstream connections"):
//
//   - A connection goes back to the pool only when its response was framed
//     to the last byte and nothing else was read after it; any byte left or
//     arriving while it is idle (a late second response, a body sent to a
//     HEAD) means it is closed, and those bytes are never handed to anyone
//     (each reuse starts with a non-blocking peek: peerOpen).
//   - Responses over responseBufferMax, or of unknown length, are streamed
//     to the client while the connection stays with that response; smaller
//     ones are read whole and written once.
//   - Request bodies the route does not need are streamed, not held.
//   - Retries are decided by the caller (forward.go), with what was sent and
//     what arrived in hand.
//   - A client that leaves while the upstream is slow releases the upstream
//     connection within clientCheckEvery.
type upstream struct {
	key      string
	network  string // "tcp" or "unix"
	addr     string // dial address
	tlsConf  *tls.Config
	dialHook func(addr string) (net.Conn, error) // Options.Dial (tests)
	mirror   bool

	// busy bounds connections in use when MaxConnectionsPerServer is set;
	// a request waits for a slot until its deadline (as .NET's handler
	// queues requests over MaxConnectionsPerServer). nil: no bound.
	busy chan struct{}

	mu     sync.Mutex
	idle   []*uconn // most recently used last
	open   int
	closed bool
}

// Connection pool tunables.
const (
	// upstreamIdleTimeout is how long an idle connection is kept. Servers
	// close theirs sooner or later (Node and Apache after 5 s); the peek
	// before reuse notices that, this only bounds open descriptors.
	upstreamIdleTimeout = 30 * time.Second
	// upstreamReadBuffer bounds an upstream response's header (bigger is
	// answered 502).
	upstreamReadBuffer = 16 << 10
	// clientCheckEvery is how often a request waiting on a slow upstream
	// checks that its client is still there.
	clientCheckEvery = time.Second
)

var (
	errClientGone = errors.New("engine: client closed the connection")
	// errUpstreamAnswered ends a request's write: the upstream answered
	// before taking the whole request (roundTrip reads that answer).
	errUpstreamAnswered = errors.New("engine: upstream answered before taking the whole request")
	errKeptPartial      = errors.New("engine: the socket took part of a kept request")
	errNoFreeConns      = errors.New("engine: no free upstream connection before the deadline")
)

// tcpDialer dials every pool's TCP connections. One per process: its DNS
// cache is shared, and its cache cleaner is one goroutine, not one per pool.
var tcpDialer = &fasthttp.TCPDialer{DNSCacheDuration: time.Minute}

func newUpstream(key, network, addr string, tlsConf *tls.Config, maxConns int, dialHook func(string) (net.Conn, error)) *upstream {
	u := &upstream{key: key, network: network, addr: addr, tlsConf: tlsConf, dialHook: dialHook}
	if maxConns > 0 {
		u.busy = make(chan struct{}, maxConns)
	}
	return u
}

// uconn is one upstream connection. While in use it has a read buffer; an
// idle one has none (the buffer was empty when it was released, or the
// connection was closed instead).
type uconn struct {
	up     *upstream
	nc     net.Conn
	rc     syscall.RawConn // the socket, for peeks; nil when there is none (tests' in-memory conns)
	br     *bufio.Reader
	bw     *bufio.Writer // while a request is written
	idleAt int64         // monoNow when released
	reused bool          // this use is not the connection's first request
	gone   bool          // Read saw the watched client gone
	// Of the current exchange: bytes read (any byte of an answer rules out
	// a retry), and a Connection: close token in the answer.
	nread    int
	closeTok bool

	peekFn  func(fd uintptr) // peek's callback, made once
	peekN   int
	peekErr error
	peekB   [1]byte

	// A request written whole in one go waits here for the first Read,
	// which sends it and waits for the answer in one pass (sendThenRead).
	deferWrite bool         // the next Write is the whole request: keep it
	stash      *pool.Buffer // the kept request
	stashOff   int          // how much of it sendThenRead sent
	wn         int          // bytes written through Write since attachWriter
	sr         sendRead

	// Read-side settings of the current use (see Read).
	hard   time.Time     // the exchange's deadline
	client net.Conn      // the client's connection, checked while waiting past clientCheckEvery; nil: not watched
	wHard  time.Time     // the current write's deadline (Write)
	rdSet  time.Time     // the socket's read deadline (setRD)
	wdSet  time.Time     // the socket's write deadline (setWD)
	isTLS  bool          // a write timeout is fatal to a TLS connection: no soft write deadlines
	idleTO time.Duration // > 0 while streaming: each read gets this long
}

var readerPool, writerPool sync.Pool

// upstreamWriteBuffer is the write buffer a request goes through: the
// header and the first part of the body leave in one write.
const upstreamWriteBuffer = 16 << 10

func (c *uconn) attachWriter() *bufio.Writer {
	c.wn = 0
	if v := writerPool.Get(); v != nil {
		c.bw = v.(*bufio.Writer)
		c.bw.Reset(c)
	} else {
		c.bw = bufio.NewWriterSize(c, upstreamWriteBuffer)
	}
	return c.bw
}

func (c *uconn) detachWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

func (c *uconn) attachReader() {
	if v := readerPool.Get(); v != nil {
		c.br = v.(*bufio.Reader)
		c.br.Reset(c)
		return
	}
	c.br = bufio.NewReaderSize(c, upstreamReadBuffer)
}

func (c *uconn) detachReader() {
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
}

// Read reads from the connection for the bufio.Reader. While the caller
// waits on the upstream (for the header, or for more of a streamed body),
// the read deadline fires every clientCheckEvery so the client can be
// checked: a client that has gone ends the wait with errClientGone (the
// connection is then closed, and the upstream notices). While streaming,
// each read gets idleTO.
func (c *uconn) Read(p []byte) (int, error) {
	if c.idleTO > 0 {
		now := time.Now()
		c.hard = now.Add(c.idleTO)
		rd := c.hard
		if c.client != nil {
			rd = earlier(now.Add(clientCheckEvery), c.hard)
		}
		if err := c.setRD(rd); err != nil {
			return 0, err
		}
	}
	for {
		var n int
		var err error
		if c.stash != nil {
			n, err = c.sendThenRead(p)
		} else {
			n, err = c.nc.Read(p)
		}
		c.nread += n
		if n > 0 || err == nil || c.client == nil || !isTimeout(err) {
			return n, err
		}
		now := time.Now()
		if !now.Before(c.hard) {
			return n, err
		}
		if connGone(c.client) {
			c.gone = true
			return 0, errClientGone
		}
		if err := c.setRD(earlier(now.Add(clientCheckEvery), c.hard)); err != nil {
			return 0, err
		}
	}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Write writes to the connection for the request's bufio.Writer. A write
// the upstream does not take (it stopped reading) wakes every
// clientCheckEvery: an answer the upstream has already sent (a 413 or 401
// before the whole body) ends it with errUpstreamAnswered, a client that
// has gone with errClientGone; otherwise it goes on until c.wHard. A
// timed-out write leaves a TLS connection unusable, so TLS writes wait for
// c.wHard in one go.
func (c *uconn) Write(p []byte) (int, error) {
	if c.deferWrite {
		c.deferWrite = false
		c.stash = pool.Scratch.Get()
		c.stash.B = append(c.stash.B[:0], p...)
		return len(p), nil
	}
	c.wn += len(p)
	total := 0
	for {
		n, err := c.nc.Write(p[total:])
		total += n
		if err == nil || c.isTLS || !isTimeout(err) {
			return total, err
		}
		now := time.Now()
		if !now.Before(c.wHard) {
			return total, err
		}
		if c.dataWaiting() {
			return total, errUpstreamAnswered
		}
		if c.client != nil && connGone(c.client) {
			c.gone = true
			return total, errClientGone
		}
		if err := c.setWD(earlier(now.Add(clientCheckEvery), c.wHard)); err != nil {
			return total, err
		}
	}
}

// canDefer reports whether the request being written, held whole in the
// write buffer, may wait for the first Read: only on a plain TCP socket.
func (c *uconn) canDefer() bool { return sendThenReadOK && c.rc != nil && !c.isTLS && c.wn == 0 }

// sendThenRead sends the kept request and reads the start of its answer
// in one pass over the socket, saving the read that a plain write then
// Read makes and that finds nothing yet (the upstream has not answered):
// the runtime's readiness flag for the socket is reset before the request
// leaves, so the answer's arrival cannot be missed, and the wait goes
// straight to the poller. When the socket does not take the whole request
// at once (a full send buffer, or a deadline already past), it returns
// errKeptPartial with the rest kept: the caller sends it with sendRest,
// with Write's deadlines and checks and writeRequest's handling of an
// early answer.
func (c *uconn) sendThenRead(p []byte) (int, error) {
	n, unsent, sent, err := c.sr.run(c.rc, c.up.network, c.stash.B, p)
	if !sent {
		if _, errno := err.(syscall.Errno); err == syscall.EAGAIN || !errno {
			c.stashOff = len(c.stash.B) - len(unsent)
			return 0, errKeptPartial
		}
		c.dropStash()
		return 0, errors.Join(errUpstreamRequest, err)
	}
	c.dropStash()
	return n, err
}

// sendRest writes what sendThenRead could not send.
func (c *uconn) sendRest() error {
	_, err := c.Write(c.stash.B[c.stashOff:])
	c.dropStash()
	return err
}

func (c *uconn) dropStash() {
	if c.stash != nil {
		pool.Scratch.Put(c.stash)
		c.stash = nil
	}
	c.deferWrite = false
}

// setWriteDeadline arms the next writes with deadline hard.
func (c *uconn) setWriteDeadline(hard time.Time) error {
	return c.armWrites(hard, time.Now())
}

func (c *uconn) armWrites(hard, now time.Time) error {
	c.wHard = hard
	if c.isTLS {
		return c.setWD(hard)
	}
	wd := earlier(now.Add(clientCheckEvery), hard)
	if keepDeadline(c.wdSet, wd, now) {
		return nil
	}
	return c.setWD(wd)
}

// setDeadlines arms the connection for one exchange: writes and reads end at
// hard; when the client is watched and the deadline is far, the first read
// deadline comes after clientCheckEvery (Read extends it while the client is
// there).
func (c *uconn) setDeadlines(hard time.Time, client net.Conn) error {
	c.hard, c.client, c.idleTO, c.gone, c.closeTok = hard, client, 0, false, false
	now := time.Now()
	if err := c.armWrites(hard, now); err != nil {
		return err
	}
	rd := hard
	if client != nil {
		rd = earlier(now.Add(clientCheckEvery), hard)
		if !c.isTLS && keepDeadline(c.rdSet, rd, now) { // tlsHolds sets TLS ones itself
			return nil
		}
	}
	return c.setRD(rd)
}

// setRD and setWD set the socket's deadlines and remember them. A deadline
// that only wakes Read or Write to check the client and the exchange's
// own deadline (non-TLS writes, reads with the client watched) is kept
// from one exchange to the next while it is still half a check period
// away and no later than wanted (keepDeadline): on a busy connection most
// exchanges then update no timer. An early wake-up only costs a check.
func (c *uconn) setRD(t time.Time) error {
	c.rdSet = t
	return c.nc.SetReadDeadline(t)
}

func (c *uconn) setWD(t time.Time) error {
	c.wdSet = t
	return c.nc.SetWriteDeadline(t)
}

func keepDeadline(cur, want, now time.Time) bool {
	return !cur.IsZero() && !cur.After(want) && cur.Sub(now) >= clientCheckEvery/2
}

// acquire returns a connection to use until release or discard: an idle one
// that passed the peek, or a new one. It waits for a slot until deadline
// when the pool bounds its connections.
func (u *upstream) acquire(deadline time.Time) (*uconn, error) {
	if u.busy != nil {
		select {
		case u.busy <- struct{}{}:
		default:
			if err := u.waitSlot(deadline); err != nil {
				return nil, err
			}
		}
	}
	for {
		c := u.popIdle()
		if c == nil {
			break
		}
		if !c.peerOpen() {
			// Closed by the server while idle, or bytes nobody asked
			// for: never used again, nothing of it reaches anyone.
			u.closeConn(c)
			continue
		}
		c.reused = true
		c.attachReader()
		return c, nil
	}
	c, err := u.dial(deadline)
	if err != nil {
		u.freeSlot()
		return nil, err
	}
	c.attachReader()
	return c, nil
}

func (u *upstream) waitSlot(deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case u.busy <- struct{}{}:
		return nil
	case <-t.C:
		return errNoFreeConns
	}
}

func (u *upstream) freeSlot() {
	if u.busy != nil {
		<-u.busy
	}
}

func (u *upstream) popIdle() *uconn {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := len(u.idle)
	if n == 0 {
		return nil
	}
	c := u.idle[n-1]
	u.idle[n-1] = nil
	u.idle = u.idle[:n-1]
	return c
}

// dial opens a connection. A closed (retired) pool still dials, for a
// request finishing on the snapshot that used it; release closes it after.
func (u *upstream) dial(deadline time.Time) (*uconn, error) {
	u.mu.Lock()
	u.open++
	u.mu.Unlock()
	nc, err := u.dialConn(deadline)
	if err != nil {
		u.mu.Lock()
		u.open--
		u.mu.Unlock()
		return nil, err
	}
	c := &uconn{up: u, nc: nc}
	raw := nc
	if tc, ok := nc.(*tls.Conn); ok {
		raw = tc.NetConn()
		c.isTLS = true
	}
	if sc, ok := raw.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	return c, nil
}

func (u *upstream) dialConn(deadline time.Time) (net.Conn, error) {
	var nc net.Conn
	var err error
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return nil, fasthttp.ErrDialTimeout
	}
	switch {
	case u.dialHook != nil:
		nc, err = u.dialHook(u.addr)
	case u.network == "unix":
		d := net.Dialer{Timeout: timeout}
		nc, err = d.Dial("unix", u.addr)
	default:
		nc, err = tcpDialer.DialTimeout(u.addr, timeout)
	}
	if err != nil {
		return nil, err
	}
	if u.tlsConf != nil {
		tc := tls.Client(nc, u.tlsConf)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	return nc, nil
}

// release returns a connection whose exchange ended cleanly: the response
// was framed to its last byte and nothing was read past it. Anything in the
// read buffer means bytes the upstream sent unasked: the connection is
// closed instead.
func (u *upstream) release(c *uconn) {
	if c.stash != nil {
		u.discard(c) // a request never sent
		return
	}
	if c.br != nil && c.br.Buffered() > 0 || tlsHolds(c.nc) {
		u.discard(c)
		return
	}
	c.detachReader()
	c.client = nil
	c.idleAt = monoNow()
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		u.discard(c)
		return
	}
	u.idle = append(u.idle, c)
	u.mu.Unlock()
	u.freeSlot()
}

// tlsHolds reports whether a TLS connection has decrypted bytes waiting:
// crypto/tls hands out one record per Read and keeps the next one, where
// neither the read buffer's check nor the socket's peek can see it. A read
// with a deadline in the past returns them, or a timeout (which leaves the
// connection usable) when there are none.
func tlsHolds(nc net.Conn) bool {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return false
	}
	if tc.SetReadDeadline(time.Unix(1, 0)) != nil {
		return true
	}
	var b [1]byte
	n, err := tc.Read(b[:])
	return n > 0 || !isTimeout(err)
}

// discard closes a connection that must not be reused.
func (u *upstream) discard(c *uconn) {
	c.dropStash()
	c.detachReader()
	u.closeConn(c)
	u.freeSlot()
}

func (u *upstream) closeConn(c *uconn) {
	c.nc.Close()
	u.mu.Lock()
	u.open--
	u.mu.Unlock()
}

// sweep closes connections idle for longer than upstreamIdleTimeout.
func (u *upstream) sweep(now int64) {
	var old []*uconn
	u.mu.Lock()
	n := 0
	for n < len(u.idle) && now-u.idle[n].idleAt > int64(upstreamIdleTimeout) {
		n++
	}
	if n > 0 {
		old = append(old, u.idle[:n]...)
		copy(u.idle, u.idle[n:])
		for i := len(u.idle) - n; i < len(u.idle); i++ {
			u.idle[i] = nil
		}
		u.idle = u.idle[:len(u.idle)-n]
	}
	u.mu.Unlock()
	for _, c := range old {
		u.closeConn(c)
	}
}

// close retires the pool: its idle connections close now, those in use
// when they are released, and it keeps none from then on.
func (u *upstream) close() {
	u.mu.Lock()
	u.closed = true
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, c := range idle {
		u.closeConn(c)
	}
}
