package engine

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Upstream servers close keep-alive connections that stay idle (Node and
// Apache after 5 s, many others sooner), and fasthttp keeps them for up to
// 10 s. A request written to such a connection fails before the server has
// seen a byte of it, and fasthttp retries only GET, HEAD and PUT: a POST
// would get a 502 for nothing. So before the first write on a connection
// that has been idle for staleCheckAfter, vkp peeks at it without blocking
// (one recvfrom): end of stream, a reset or unsolicited bytes mean the
// server is done with it, and the write fails with errStaleConn before
// anything is sent. Pools retry that error for every method: the request
// cannot have reached the server. Busy connections are never checked.
//
// Idle time is counted from the connection's last write, not its last read:
// one clock read per write instead of one per read and write (time.Now was
// 2% of vkp's CPU on small requests). A response slower than
// staleCheckAfter makes the next request on that connection check it once,
// which costs a recvfrom after a wait far longer than one.

// staleCheckAfter is how long a connection must have been idle before it
// is checked. Below it, a server closing the connection is rare enough that
// a peek per request would cost more than it saves.
const staleCheckAfter = 250 * time.Millisecond

// errStaleConn is returned by a write to a kept-alive connection the server
// has closed while it was idle. Nothing was written.
var errStaleConn = errors.New("vkp: upstream closed the idle keep-alive connection")

// liveConn wraps an upstream TCP connection with the idle check.
type liveConn struct {
	net.Conn
	rc   syscall.RawConn
	last atomic.Int64 // monoNow of the last write
}

func newLiveConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	lc := &liveConn{Conn: c, rc: rc}
	lc.last.Store(monoNow())
	return lc
}

func (c *liveConn) Write(p []byte) (int, error) {
	now := monoNow()
	if now-c.last.Load() >= int64(staleCheckAfter) && !peerOpen(c.rc) {
		return 0, errStaleConn
	}
	c.last.Store(now)
	return c.Conn.Write(p)
}

// dialLive dials addr like fasthttp's HostClient does and wraps the
// connection with the idle check.
func dialLive(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	if timeout > 0 {
		c, err = fasthttp.DialTimeout(addr, timeout)
	} else {
		c, err = fasthttp.Dial(addr)
	}
	if err != nil {
		return nil, err
	}
	return newLiveConn(c), nil
}

// retryUpstream is the pools' retry rule: a request refused by a stale
// connection is always sent again (on another connection); other failures
// are retried for idempotent methods only, as fasthttp does by default, up
// to maxIdempotentAttempts.
func retryUpstream(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if errors.Is(err, errStaleConn) {
		return false, true
	}
	h := &req.Header
	return false, attempts < maxIdempotentAttempts && (h.IsGet() || h.IsHead() || h.IsPut())
}

const (
	maxIdempotentAttempts = 5  // fasthttp's default
	maxUpstreamAttempts   = 16 // stale connections included
)
