package engine

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// exchange is one proxied request on its way through a route's stages. It
// is pooled: a request allocates none.
type exchange struct {
	e     *Engine
	ctx   *fasthttp.RequestCtx
	route *Route
	body  reqBody
	// closeClient is set when the client connection must not carry another
	// request (its body was not read to the end, or its framing was bad).
	closeClient bool
	// failed: the response is vkp's own error answer (fail).
	failed bool
	// stream is the response body streaming from the upstream, if it
	// streams (roundtrip.go).
	stream *respStream
	// h10 is set when stream goes to an HTTP/1.0 client by a takeover of
	// its connection (streamToHTTP10): the takeover's start flag (also
	// set by its watchdog) and the watchdog.
	h10Started *atomic.Bool
	h10Dog     *time.Timer
	// For the access log and metrics: the status of an error vkp
	// answered (0: the response's), the destination of the last attempt,
	// the upstream exchange's time, the request's trace (--sampler trace).
	status   int
	dest     *Destination
	upstream time.Duration
	trace    traceContext
}

var (
	exchangePool = sync.Pool{New: func() any { return new(exchange) }}
	headerPool   = sync.Pool{New: func() any { return new(fasthttp.RequestHeader) }}
)

func (e *Engine) acquireExchange(ctx *fasthttp.RequestCtx) *exchange {
	x := exchangePool.Get().(*exchange)
	x.e, x.ctx = e, ctx
	return x
}

func (x *exchange) release() {
	x.body.release(x.e)
	*x = exchange{}
	exchangePool.Put(x)
}

// reqBody is the request body as vkp holds it: the first part (all of it
// when held), then what is still to be read from the client. A body is held
// only when a stage needs it (mirroring, a Statement reading Form); otherwise
// it is streamed to the upstream as it arrives.
type reqBody struct {
	n       int               // Content-Length, or -1 for chunked
	req     *fasthttp.Request // set when the body is the request's own (built in-process, no stream)
	buf     *pool.Buffer      // held bytes, pool.Bodies; nil when none
	charged int64             // bytes of buf charged to Options.BodyMemory
	stream  io.Reader         // the rest, from the client; nil once read to the end
	read    int               // bytes taken from stream so far
	started bool              // part of the stream went to an upstream: no retry
}

// held returns the held bytes.
func (b *reqBody) held() []byte {
	switch {
	case b.buf != nil:
		return b.buf.B
	case b.req != nil:
		return b.req.Body()
	}
	return nil
}

// whole reports whether the whole body is held (or there is none).
func (b *reqBody) whole() bool { return b.stream == nil }

func (b *reqBody) release(e *Engine) {
	if b.buf != nil {
		pool.Bodies.Put(b.buf)
		b.buf = nil
	}
	if b.charged > 0 {
		e.bodyMem.Add(-b.charged)
		b.charged = 0
	}
}

// Errors of the client side of a request; statusFor maps them.
var (
	errBadFraming      = errors.New("engine: request framing is ambiguous (Content-Length with Transfer-Encoding)")
	errBadHeaderName   = errors.New("engine: request header name is not a token")
	errUnsupportedTE   = errors.New("engine: transfer coding other than chunked")
	errHTTPVersion     = errors.New("engine: HTTP version not supported")
	errConnect         = errors.New("engine: CONNECT is not supported (vkp is a reverse proxy)")
	errMissingHost     = errors.New("engine: HTTP/1.1 request without Host")
	errClientBody      = errors.New("engine: reading the request body failed")
	errClientBodySlow  = errors.New("engine: the client stopped sending its request body")
	errBodyMemory      = errors.New("engine: request body memory budget exhausted")
	errBodyShort       = errors.New("engine: request body ended before its Content-Length")
	errUpstreamRequest = errors.New("engine: writing the request to the upstream failed")
)

var (
	strHTTP11 = []byte("HTTP/1.1")
	strHTTP10 = []byte("HTTP/1.0")
)

// checkRequest refuses what a proxy must not pass on (RFC 9112): versions
// other than HTTP/1.0 and 1.1 (505), Content-Length together with
// Transfer-Encoding in any spelling (the smuggling shapes), a transfer
// coding other than chunked (501), header names that are not tokens (a
// space in "Content Length: 5"), obs-fold lines, and an HTTP/1.1 request
// without Host (400). Every refusal closes the connection: what follows on
// it cannot be trusted to be framed as the client meant. fasthttp has
// already refused bare CR, NUL, bad chunk sizes, duplicate Content-Length,
// duplicate Host and oversized headers.
func checkRequest(h *fasthttp.RequestHeader) error {
	proto := h.Protocol()
	http11 := bytes.Equal(proto, strHTTP11)
	if !http11 && !bytes.Equal(proto, strHTTP10) {
		return errHTTPVersion
	}
	if h.IsConnect() {
		return errConnect
	}
	var cl, te int
	raw := h.RawHeaders()
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		line := raw
		if i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isTokenBytes(line[:colon]) {
			return errBadHeaderName // also obs-fold: a line starting with SP or HTAB
		}
		name := line[:colon]
		switch {
		case asciiEqualFold(name, "Content-Length"):
			cl++
		case asciiEqualFold(name, "Transfer-Encoding"):
			te++
			if !asciiEqualFold(bytes.Trim(line[colon+1:], " \t"), "chunked") {
				return errUnsupportedTE
			}
		}
	}
	if te > 0 && cl > 0 {
		return errBadFraming
	}
	if http11 && len(h.Host()) == 0 {
		return errMissingHost
	}
	return nil
}

// startBody sets up x.body from what fasthttp read (the server streams
// request bodies: it reads at most a few KiB of one before the handler).
func (x *exchange) startBody() {
	h := &x.ctx.Request.Header
	n := h.ContentLength()
	x.body = reqBody{n: n}
	if n == 0 || n == -2 {
		x.body.n = 0
		return
	}
	x.body.stream = x.ctx.RequestBodyStream()
	if x.body.stream == nil {
		// A request built in-process (tests): its body is already whole.
		x.body.req = &x.ctx.Request
		x.body.n = len(x.ctx.Request.Body())
	}
}

// fastRoom bounds the room a held body of known length gets at once when
// its client keeps up (hold): 1 MiB, the default --body-buffer, so that
// such a body is read in two reads, while a client that stalls after one
// full read holds at most this much more than it sent.
const fastRoom = 1 << 20

// errBodyHeldPart ends hold when the body is longer than its limit: what
// was read stays held, the rest streams.
var errBodyHeldPart = errors.New("engine: request body longer than the part to hold")

// hold reads the rest of the body into memory, charging Options.BodyMemory
// as it goes. A body longer than limit is not read past it
// (errBodyHeldPart); when the budget refuses, it stops with errBodyMemory.
// Either way what was read stays held and the rest can still be streamed.
// Trailer fields of a chunked body are dropped, never merged into the
// headers (fasthttp would merge them).
func (x *exchange) hold(limit int) error {
	b := &x.body
	if b.stream == nil {
		return nil
	}
	if b.n > limit {
		return errBodyHeldPart
	}
	e := x.e
	if b.buf == nil {
		b.buf = pool.Bodies.Get()
		b.buf.B = b.buf.B[:0]
		// The budget is charged for capacity, what the buffer holds: a
		// body starts in at most 64 KiB and grows as it arrives (a large
		// pooled buffer would be charged in full for the first bytes).
		if cap(b.buf.B) > 64<<10 {
			b.buf.B = nil
		}
	}
	var saved *fasthttp.RequestHeader
	if b.n < 0 {
		saved = headerPool.Get().(*fasthttp.RequestHeader)
		x.ctx.Request.Header.CopyTo(saved)
		defer func() {
			saved.CopyTo(&x.ctx.Request.Header) // any trailer merged meanwhile is gone
			saved.Reset()
			headerPool.Put(saved)
		}()
	}
	fast := false
	for {
		// Charged as it arrives: each read may take at most as much again
		// as has arrived (64 KiB at first), so a client that announces a
		// large body and sends it slowly holds about what it sent, and a
		// fast one is read in a few large reads (a 1 MiB body in 64 KiB
		// reads cost the proxy a third more CPU than in whole ones). Once
		// a read of a body of known length comes back full (the client
		// sends as fast as vkp reads), the rest gets its room at once:
		// growing by doubling copied as much again as the body and touched
		// twice its size in fresh pages, which on a cold start (an empty
		// pool, a growing heap) fed a latency spiral (BENCHMARKS.md). That
		// room is at most fastRoom more than has arrived: a client that
		// sends one full read and then stalls must not have vkp hold (and
		// charge) its whole Content-Length, up to --max-request-body for a
		// mirrored route, for a few KiB sent.
		step := max(64<<10, len(b.buf.B))
		if b.n >= 0 {
			rem := b.n - b.read
			if rem <= 0 {
				b.stream = nil
				return nil
			}
			if fast {
				step = max(step, fastRoom)
			}
			step = min(step, rem)
		} else if len(b.buf.B) >= limit {
			return errBodyHeldPart
		}
		if cap(b.buf.B)-len(b.buf.B) < step {
			c := max(2*cap(b.buf.B), len(b.buf.B)+step)
			if b.n >= 0 {
				c = min(c, b.n)
			}
			nb := pool.Bodies.GetCap(c)
			if !e.chargeBody(b, cap(nb.B)) {
				pool.Bodies.Put(nb)
				return errBodyMemory
			}
			nb.B = append(nb.B, b.buf.B...)
			pool.Bodies.Put(b.buf)
			b.buf = nb
		} else if !e.chargeBody(b, cap(b.buf.B)) {
			return errBodyMemory
		}
		k, err := x.readBody(b.buf.B[len(b.buf.B) : len(b.buf.B)+step])
		b.buf.B = b.buf.B[:len(b.buf.B)+k]
		fast = k == step
		if err == io.EOF {
			b.stream = nil
			e.trimCharge(b)
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// chargeBody makes sure size bytes of b's buffer are charged to the body
// memory budget.
func (e *Engine) chargeBody(b *reqBody, size int) bool {
	need := int64(size) - b.charged
	if need <= 0 {
		return true
	}
	if e.bodyMem.Add(need) > e.opts.BodyMemory {
		e.bodyMem.Add(-need)
		return false
	}
	b.charged += need
	return true
}

// trimCharge gives back what was charged beyond the buffer's capacity
// (nothing, while charges follow capacity; kept so that the two cannot
// drift apart).
func (e *Engine) trimCharge(b *reqBody) {
	if over := b.charged - int64(cap(b.buf.B)); over > 0 {
		e.bodyMem.Add(-over)
		b.charged -= over
	}
}

// readBody reads the next part of the body from the client into p. Each
// read gets --body-timeout; the body limit applies to chunked bodies here
// (a Content-Length over it was refused before). io.EOF ends the body.
func (x *exchange) readBody(p []byte) (int, error) {
	b := &x.body
	if len(p) == 0 {
		return 0, nil
	}
	if c := x.ctx.Conn(); c != nil && x.e.opts.BodyTimeout > 0 && canWatch(x.ctx) {
		c.SetReadDeadline(time.Now().Add(x.e.opts.BodyTimeout)) //nolint:errcheck // a dead conn fails the read
	}
	k, err := b.stream.Read(p)
	b.read += k
	if b.n < 0 && b.read > x.e.opts.MaxRequestBodySize {
		x.closeClient = true
		return k, fasthttp.ErrBodyTooLarge
	}
	switch {
	case err == nil:
		if b.n >= 0 && b.read == b.n {
			return k, io.EOF
		}
		return k, nil
	case err == io.EOF:
		if b.n >= 0 && b.read < b.n {
			x.closeClient = true
			return k, errBodyShort
		}
		return k, io.EOF
	}
	x.closeClient = true
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return k, errClientBodySlow
	}
	return k, errors.Join(errClientBody, err)
}
