package engine

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// responseBufferMax is the largest response body read whole and written to
// the client at once (one read, one write, no allocation once the pools are
// warm). Larger ones, and chunked or close-delimited ones that grow past it,
// are streamed to the client as they arrive.
const responseBufferMax = 64 << 10

// How far an exchange with an upstream got, for the retry decision.
type rtStage uint8

const (
	rtNone     rtStage = iota // nothing was written: no connection, or refused before the first byte
	rtSent                    // (some of) the request was written; nothing of a response arrived
	rtAnswered                // some of a response arrived: never retried
)

// Errors of the upstream side; statusFor maps them (502 unless a timeout).
var (
	errBadResponse   = errors.New("engine: malformed upstream response")
	errAmbiguousResp = errors.New("engine: upstream response has both Content-Length and Transfer-Encoding")
	errResponseHead  = errors.New("engine: upstream response header too large")
	errInterim       = errors.New("engine: too many interim (1xx) upstream responses")
	errUnexpected101 = errors.New("engine: upstream switched protocols unasked")
	errBadChunk      = errors.New("engine: malformed chunked upstream body")
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// streamBufs hold a streamed request body on its way upstream (sendBody).
var streamBufs = sync.Pool{New: func() any { b := make([]byte, streamChunk); return &b }}

const streamChunk = 256 << 10

// roundTrip sends x's request (already rewritten for the upstream) to d and
// leaves the response in ctx.Response: read whole when small, otherwise as
// a body stream that owns the connection until the server has written it.
// target is the request-target to send. It reports how far it got.
func (x *exchange) roundTrip(d *Destination, target []byte, deadline time.Time) (rtStage, error) {
	u := d.up
	c, err := u.acquire(deadline)
	if err != nil {
		return rtNone, err
	}
	var watch net.Conn
	if canWatch(x.ctx) {
		watch = x.ctx.Conn()
	}
	if err := c.setDeadlines(deadline, watch); err != nil {
		u.discard(c)
		return rtNone, err
	}
	c.nread = 0
	d.inflight.Add(1)
	streaming := false
	defer func() {
		if !streaming {
			d.inflight.Add(-1)
		}
	}()
	stage, err := x.writeRequest(c, d, target)
	if err == nil {
		err = readResponseHead(c, &x.ctx.Response.Header)
		if errors.Is(err, errKeptPartial) {
			// A request kept for sendThenRead that the socket did not take
			// whole: the rest goes as writeRequest sends.
			if err = c.sendRest(); err != nil && !isClientErr(err) {
				err = errors.Join(errUpstreamRequest, err)
			} else if err == nil {
				err = readResponseHead(c, &x.ctx.Response.Header)
			}
		}
		if err != nil && !errors.Is(err, errUpstreamRequest) {
			stage := rtAnswered
			if c.nread == 0 && !c.gone {
				stage = rtSent // nothing of a response arrived
			}
			if c.gone {
				err = errClientGone
			}
			u.discard(c)
			return stage, err
		}
	}
	if err != nil {
		if !errors.Is(err, errUpstreamRequest) || !x.earlyAnswer(c) {
			if c.nread > 0 {
				stage = rtAnswered // part of an answer: never retried
			}
			u.discard(c)
			return stage, err
		}
		// The upstream answered before taking the whole request (a 401 or
		// 413) and stopped reading: its answer is forwarded; a client body
		// not read to its end closes the client's connection, and the
		// upstream's, holding part of a request, is not reused.
		x.closeClient = !x.body.whole()
		c.closeTok = true
	}
	resp := &x.ctx.Response
	h := &resp.Header
	ensureDate(h)
	reusable := !h.ConnectionClose() && !c.closeTok && !x.closeClient
	// vkp answers as an HTTP/1.1 server whatever the upstream spoke: its
	// framing (chunked, keep-alive) is vkp's own.
	h.SetProtocol(strHTTP11)
	if x.ctx.Request.Header.IsHead() || noBody(h.StatusCode()) {
		u.finish(c, reusable)
		return rtAnswered, nil
	}
	switch n := h.ContentLength(); {
	case n >= 0 && n <= responseBufferMax:
		if err := resp.ReadBody(c.br, 0); err != nil {
			if c.gone {
				err = errClientGone
			}
			u.discard(c)
			return rtAnswered, err
		}
		u.finish(c, reusable)
		return rtAnswered, nil
	case n >= 0:
		s := newRespStream(c, fixedBody, int64(n), reusable)
		s.inflight = d.inflight
		x.startStream(s)
		streaming = true
		return rtAnswered, nil
	}
	// Chunked or close-delimited: what has arrived, up to
	// responseBufferMax, is read at once; a body that has all arrived is
	// sent with a Content-Length like a small one. Otherwise it streams
	// from here, so an event stream's first event is not held back.
	kind := uint8(chunkedBody)
	if h.ContentLength() != -1 {
		kind, reusable = closeBody, false
	}
	s := newRespStream(c, kind, 0, reusable)
	buf := pool.Bodies.Get()
	buf.B = buf.B[:0]
	c.idleTO = x.route.timeout // each wait for more of the body gets the route's timeout
	done, err := s.fill(buf, responseBufferMax)
	if err != nil || done {
		reusable = s.reusable
		pool.Bodies.Put(s.take(buf, done, resp))
		if err != nil {
			u.discard(c)
			if c.gone {
				err = errClientGone
			}
			return rtAnswered, err
		}
		u.finish(c, reusable)
		return rtAnswered, nil
	}
	s.prefix = buf
	s.inflight = d.inflight
	if !x.ctx.Request.Header.IsHTTP11() {
		// An HTTP/1.0 client cannot take a chunked answer: the body goes
		// as it comes, delimited by the connection's close.
		x.streamToHTTP10(s)
	} else {
		x.startStream(s)
	}
	streaming = true
	return rtAnswered, nil
}

// ensureDate gives a response without Date the one RFC 9110 section 6.6.1
// has a recipient with a clock add. vkp's server passes the upstream's Date
// through (NoDefaultDate), and fasthttp ignores a Date set on a header
// (it manages Date itself): it writes its own only for a header that was
// reset, so a Date-less header is rebuilt that way, with pooled scratch
// (origins nearly always send Date: this is the rare path).
func ensureDate(h *fasthttp.ResponseHeader) {
	if len(h.Peek("Date")) > 0 {
		return
	}
	rr := rereaders.Get().(*headerRereader)
	rr.buf = h.AppendBytes(rr.buf[:0])
	h.Reset()
	h.SetNoDefaultContentType(true)
	rr.r.Reset(rr.buf)
	if rr.br == nil || rr.br.Size() < len(rr.buf)+16 {
		// fasthttp reads a header only when its reader can hold all of it.
		rr.br = bufio.NewReaderSize(&rr.r, max(upstreamReadBuffer, len(rr.buf))+256)
	} else {
		rr.br.Reset(&rr.r)
	}
	h.Read(rr.br) //nolint:errcheck // fasthttp wrote it
	rr.r.Reset(nil)
	rr.br.Reset(&rr.r)
	if cap(rr.buf) > 64<<10 {
		rr.buf = nil
	}
	rereaders.Put(rr)
}

// headerRereader is ensureDate's scratch: a header's bytes and a reader
// over them.
type headerRereader struct {
	buf []byte
	r   bytes.Reader
	br  *bufio.Reader
}

var rereaders = sync.Pool{New: func() any { return new(headerRereader) }}

// earlyAnswer reads an answer the upstream sent while vkp was still
// writing the request (its write failed because the upstream stopped
// reading). It waits at most a second for it.
func (x *exchange) earlyAnswer(c *uconn) bool {
	if c.setDeadlines(time.Now().Add(time.Second), nil) != nil {
		return false
	}
	return readResponseHead(c, &x.ctx.Response.Header) == nil
}

// finish ends a connection's use after a response without a body stream.
func (u *upstream) finish(c *uconn, reusable bool) {
	if reusable {
		u.release(c)
	} else {
		u.discard(c)
	}
}

// noBody reports the statuses that never have a body (RFC 9112 6.3).
func noBody(status int) bool {
	return status < 200 || status == 204 || status == 304
}

// canWatch reports whether the client's connection can be checked for
// having gone (a real socket; tests' in-process requests have none).
func canWatch(ctx *fasthttp.RequestCtx) bool {
	_, ok := ctx.Conn().(syscall.Conn)
	return ok
}

// writeRequest writes the request line, the header and the body through a
// 16 KiB write buffer: the header goes out with the first part of the body
// (a header sent alone ahead of a large body cost the proxy far more CPU,
// BENCHMARKS.md), a small request in one write. A streamed body
// follows as it arrives from the client, each write getting the route's
// timeout. It returns rtNone only when nothing was written.
func (x *exchange) writeRequest(c *uconn, d *Destination, target []byte) (rtStage, error) {
	req := &x.ctx.Request
	h := &req.Header
	b := &x.body
	h.SetRequestURIBytes(target)
	switch {
	case !b.whole():
		h.SetContentLength(b.n) // -1: chunked
	case len(b.held()) > 0 || (!h.IsGet() && !h.IsHead()):
		h.SetContentLength(len(b.held()))
	case h.ContentLength() > 0 || h.ContentLength() == -1:
		// A GET or HEAD whose whole body is empty (one built in-process,
		// a cache refresh) never announces one: an upstream would take
		// the start of the next request on this connection as its body.
		h.SetContentLength(0)
		h.Del("Content-Length")
	}
	http10 := !h.IsHTTP11()
	if http10 {
		h.SetProtocolBytes(strHTTP11) // what reaches an upstream is always HTTP/1.1
	}
	bw := c.attachWriter()
	defer c.detachWriter()
	_, err := bw.Write(h.AppendBytes(bw.AvailableBuffer()))
	if http10 {
		h.SetProtocolBytes(strHTTP10)
	}
	if err == nil {
		if b.whole() {
			_, err = bw.Write(b.held())
		} else {
			err = x.sendBody(c, bw)
		}
	}
	if err == nil {
		// A request held whole in the buffer is sent by the first read of
		// its answer (sendThenRead).
		c.deferWrite = b.whole() && c.canDefer()
		err = bw.Flush()
		c.deferWrite = false
	}
	if err != nil {
		if isClientErr(err) {
			return rtSent, err
		}
		return rtSent, errors.Join(errUpstreamRequest, err)
	}
	if !b.whole() || b.started {
		// The wait for the answer starts now.
		return rtSent, c.setDeadlines(time.Now().Add(x.route.timeout), c.client)
	}
	return rtSent, nil
}

// sendBody writes the held part of the body and streams the rest to the
// upstream as it arrives, in parts of up to streamChunk (each filled before
// it is written: writes of whatever one read returned, often a few KiB on
// loopback, cost the proxy and the upstream more). A chunked body is sent
// chunked (the client's chunks are not kept: vkp frames what it sends);
// trailer fields are dropped.
func (x *exchange) sendBody(c *uconn, bw *bufio.Writer) error {
	b := &x.body
	chunked := b.n < 0
	timeout := x.route.timeout
	write := func(p []byte) error {
		if chunked {
			var hd [18]byte
			if _, err := bw.Write(appendChunkHeader(hd[:0], len(p))); err != nil {
				return err
			}
		}
		if err := c.setWriteDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		if _, err := bw.Write(p); err != nil {
			return err
		}
		if chunked {
			_, err := bw.Write(strCRLF)
			return err
		}
		return nil
	}
	if held := b.held(); len(held) > 0 {
		b.started = true
		if err := write(held); err != nil {
			return err
		}
	}
	bp := streamBufs.Get().(*[]byte)
	defer streamBufs.Put(bp)
	buf := *bp
	for {
		var k int
		var rerr error
		for k < len(buf) && rerr == nil {
			var n int
			n, rerr = x.readBody(buf[k:])
			k += n
		}
		if k > 0 {
			b.started = true
			if err := write(buf[:k]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			b.stream = nil
			if chunked {
				_, err := bw.Write(strLastChunk)
				return err
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

var (
	strCRLF      = []byte("\r\n")
	strLastChunk = []byte("0\r\n\r\n")
)

func appendChunkHeader(dst []byte, n int) []byte {
	const hex = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = hex[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	dst = append(dst, tmp[i:]...)
	return append(dst, '\r', '\n')
}

// readResponseHead reads the final response header into h, skipping
// interim 1xx responses. The header block is checked before fasthttp parses
// it: a block whose lines end in bare LF is accepted (as nginx does) by
// rewriting it to CRLF; header names that are not tokens, obs-fold lines,
// and Content-Length together with Transfer-Encoding are refused.
func readResponseHead(c *uconn, h *fasthttp.ResponseHeader) error {
	for range 100 {
		hi, err := scanHead(c.br)
		if err != nil {
			return err
		}
		if hi.bare {
			err = parseBareLF(c.br, hi.end, h)
		} else {
			err = h.Read(c.br)
		}
		if err != nil {
			return errors.Join(errBadResponse, err)
		}
		switch st := h.StatusCode(); {
		case st < 100:
			return errBadResponse
		case st == fasthttp.StatusSwitchingProtocols:
			return errUnexpected101
		case st < 200:
			continue
		}
		c.closeTok = hi.close
		return nil
	}
	return errInterim
}

// headInfo is what checkHead learnt of a header block.
type headInfo struct {
	end   int  // the block's length
	bare  bool // some line ends in a bare LF
	close bool // a Connection line has the token "close", in any case
}

// scanHead waits until a whole header block is buffered and checks it.
func scanHead(br *bufio.Reader) (headInfo, error) {
	n := 1
	for {
		if _, err := br.Peek(n); err != nil {
			if br.Buffered() == 0 {
				return headInfo{}, err // nothing of a response: io.EOF, reset or timeout
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				return headInfo{}, errResponseHead
			}
			return headInfo{}, errors.Join(errBadResponse, err)
		}
		b, _ := br.Peek(br.Buffered())
		hi, err := checkHead(b)
		if err != nil || hi.end > 0 {
			return hi, err
		}
		if br.Buffered() >= br.Size() {
			return headInfo{}, errResponseHead
		}
		n = br.Buffered() + 1
	}
}

// checkHead finds the end of the header block at the start of b (end 0:
// not all there yet) and checks its field lines.
func checkHead(b []byte) (hi headInfo, err error) {
	var cl, te bool
	pos := 0
	first := true
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return headInfo{}, nil
		}
		line := b[pos : pos+i]
		next := pos + i + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		} else {
			hi.bare = true
		}
		switch {
		case len(line) == 0 && first:
			return headInfo{}, errBadResponse
		case len(line) == 0:
			if cl && te {
				return headInfo{}, errAmbiguousResp
			}
			hi.end = next
			return hi, nil
		case first:
			first = false
			// "HTTP/1.x NNN": fasthttp reads a status of 000 as 200.
			if sp := bytes.IndexByte(line, ' '); sp < 0 || len(line) < sp+4 || line[sp+1] < '1' || line[sp+1] > '9' ||
				line[sp+2] < '0' || line[sp+2] > '9' || line[sp+3] < '0' || line[sp+3] > '9' || (len(line) > sp+4 && line[sp+4] != ' ') {
				return headInfo{}, errBadResponse
			}
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !isTokenBytes(line[:colon]) {
				return headInfo{}, errBadResponse // also obs-fold
			}
			name := line[:colon]
			switch {
			case asciiEqualFold(name, "Content-Length"):
				cl = true
			case asciiEqualFold(name, "Transfer-Encoding"):
				te = true
			case asciiEqualFold(name, "Connection"):
				hi.close = hi.close || hasToken(line[colon+1:], "close")
			}
		}
		pos = next
	}
}

// hasToken reports whether a comma-separated header value lists tok,
// without regard to case.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if asciiEqualFold(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}

// parseBareLF parses a header block whose lines end in bare LF. Rare: it
// may allocate.
func parseBareLF(br *bufio.Reader, end int, h *fasthttp.ResponseHeader) error {
	b, _ := br.Peek(end)
	fixed := make([]byte, 0, end+64)
	for _, c := range b {
		if c == '\n' && (len(fixed) == 0 || fixed[len(fixed)-1] != '\r') {
			fixed = append(fixed, '\r')
		}
		fixed = append(fixed, c)
	}
	if _, err := br.Discard(end); err != nil {
		return err
	}
	return h.Read(bufio.NewReaderSize(bytes.NewReader(fixed), len(fixed)+16))
}

// Body framings of a response.
const (
	fixedBody   = iota // Content-Length
	chunkedBody        // Transfer-Encoding: chunked
	closeBody          // until the upstream closes
)

// chunkReader decodes a chunked body from br. Trailer fields are read and
// dropped. Chunk sizes are bounded and their lines must be well formed;
// bare LF line ends are accepted as nginx does.
type chunkReader struct {
	br       *bufio.Reader
	left     int64
	needCRLF bool
	done     bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for {
		switch {
		case r.done:
			return 0, io.EOF
		case r.left > 0:
			if int64(len(p)) > r.left {
				p = p[:r.left]
			}
			n, err := r.br.Read(p)
			r.left -= int64(n)
			if r.left == 0 {
				r.needCRLF = true
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		case r.needCRLF:
			if err := readLineEnd(r.br); err != nil {
				return 0, err
			}
			r.needCRLF = false
		default:
			n, err := readChunkSize(r.br)
			if err != nil {
				return 0, err
			}
			if n == 0 {
				if err := skipTrailer(r.br); err != nil {
					return 0, err
				}
				r.done = true
				return 0, io.EOF
			}
			r.left = n
		}
	}
}

func readLineEnd(br *bufio.Reader) error {
	c, err := br.ReadByte()
	if err == nil && c == '\r' {
		c, err = br.ReadByte()
	}
	if err != nil {
		return noEOF(err)
	}
	if c != '\n' {
		return errBadChunk
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readChunkSize reads "HEX[;ext]CRLF" (a bare LF ends it too).
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, errBadChunk
		}
		return 0, noEOF(err)
	}
	return parseChunkSize(line)
}

// parseChunkSize parses a chunk-size line, '\n' included.
func parseChunkSize(line []byte) (int64, error) {
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	var n int64
	i, digits := 0, 0
	for ; i < len(line); i++ {
		v := unhex(line[i])
		if v < 0 {
			break
		}
		if n > 0 || v > 0 {
			digits++ // leading zeros do not count
		}
		if digits > 15 {
			return 0, errBadChunk
		}
		n = n<<4 | int64(v)
	}
	if i == 0 {
		return 0, errBadChunk
	}
	rest := bytes.TrimLeft(line[i:], " \t")
	if len(rest) > 0 && rest[0] != ';' || bytes.IndexByte(rest, '\r') >= 0 {
		return 0, errBadChunk
	}
	return n, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// skipTrailer reads and drops the trailer section, up to its empty line.
func skipTrailer(br *bufio.Reader) error {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errBadChunk
			}
			return noEOF(err)
		}
		total += len(line)
		if total > upstreamReadBuffer {
			return errBadChunk
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// respStream is a response body streamed from an upstream connection to the
// client. fasthttp's server writes it (WriteTo) and then closes it
// (CloseWithError); the connection goes back to its pool only if the body
// was read to its end, nothing followed, and the write to the client
// succeeded. Each read from the upstream gets the route's timeout, each
// write to the client --write-timeout.
type respStream struct {
	c        *uconn
	kind     uint8
	left     int64 // fixedBody: bytes to go
	cr       chunkReader
	prefix   *pool.Buffer // read before streaming began; sent first
	poff     int
	done     bool // body read to its end
	reusable bool
	client   net.Conn
	writeTO  time.Duration
	inflight *atomic.Int64 // the destination's in-flight count: the stream's until it ends
	tee      *cacheTee     // the cache's capture of the body, if any
}

func newRespStream(c *uconn, kind uint8, n int64, reusable bool) *respStream {
	s := respStreamPool.Get().(*respStream)
	*s = respStream{c: c, kind: kind, left: n, reusable: reusable}
	s.cr.br = c.br
	return s
}

var respStreamPool = sync.Pool{New: func() any { return new(respStream) }}

// startStream hands ctx.Response the body stream s. While it streams, each
// read from the upstream gets the route's timeout, and a client that leaves
// while the upstream is quiet is noticed as while waiting for the header.
func (x *exchange) startStream(s *respStream) {
	x.stream = s
	s.c.idleTO = x.route.timeout
	s.client = nil
	if canWatch(x.ctx) { // a RequestCtx made in-process has no socket to set deadlines on
		s.client = x.ctx.Conn()
	}
	s.writeTO = x.e.opts.WriteTimeout
	size := -1
	if s.kind == fixedBody {
		size = int(s.left)
	}
	x.ctx.Response.SetBodyStream(s, size)
	// The client has the header as soon as the upstream's is here, not
	// with the first 16 KiB of body.
	x.ctx.Response.ImmediateHeaderFlush = true
}

// fill reads the body into buf until it ends (done), buf holds limit bytes,
// or nothing more has arrived yet.
func (s *respStream) fill(buf *pool.Buffer, limit int) (done bool, err error) {
	for len(buf.B) <= limit {
		if cap(buf.B)-len(buf.B) < 4<<10 {
			buf.B = append(buf.B, make([]byte, 16<<10)...)[:len(buf.B)]
		}
		n, err := s.Read(buf.B[len(buf.B):cap(buf.B)])
		buf.B = buf.B[:len(buf.B)+n]
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if s.wouldWait() && !s.c.dataWaiting() {
			return false, nil
		}
	}
	return false, nil
}

// wouldWait reports whether the next Read could block: the bytes buffered
// do not hold the next piece of the body (for a chunked body, a chunk's
// size line and a byte of its data, or the whole end of the body).
func (s *respStream) wouldWait() bool {
	br := s.c.br
	if s.kind != chunkedBody || s.cr.left > 0 {
		return br.Buffered() == 0
	}
	b, _ := br.Peek(br.Buffered())
	if s.cr.needCRLF {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return true
		}
		b = b[i+1:]
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return true
	}
	if n, err := parseChunkSize(b[:i+1]); err != nil || n > 0 {
		return err == nil && i+1 == len(b) // a chunk: one byte of its data is enough
	}
	// The last chunk: the trailer section must have ended.
	rest := b[i+1:]
	return !bytes.HasPrefix(rest, strCRLF) && !bytes.HasPrefix(rest, []byte("\n")) &&
		!bytes.Contains(rest, []byte("\n\r\n")) && !bytes.Contains(rest, []byte("\n\n"))
}

// take ends s without its connection (the caller finishes that): a body
// read whole goes to resp (swapped in, no copy). It returns the buffer to
// put back in the pool.
func (s *respStream) take(buf *pool.Buffer, done bool, resp *fasthttp.Response) *pool.Buffer {
	if done {
		buf.B = resp.SwapBody(buf.B)
	}
	s.c = nil
	s.CloseWithError(nil) //nolint:errcheck // returns s to its pool
	return buf
}

// streamToHTTP10 sends s to an HTTP/1.0 client delimited by the close of
// its connection: fasthttp would frame a stream of unknown length as
// chunked, which HTTP/1.0 does not have, so the connection is taken over
// once the handler returns and written by vkp.
func (x *exchange) streamToHTTP10(s *respStream) {
	x.stream = s
	h := &x.ctx.Response.Header
	h.SetConnectionClose()
	h.SetContentLength(-2) // neither Content-Length nor Transfer-Encoding
	stripHopResponse(h)
	h.SetConnectionClose()
	head := h.AppendBytes(nil)
	s.c.client = nil
	s.c.idleTO = x.route.timeout
	s.writeTO = x.e.opts.WriteTimeout
	// fasthttp runs the handler once it has written what it owes the
	// connection (an earlier pipelined answer). When that write fails it
	// never runs it: then the stream is closed here, after a write timeout.
	var started atomic.Bool
	watchdog := time.AfterFunc(s.writeTO, func() {
		if started.CompareAndSwap(false, true) {
			s.CloseWithError(errClientGone) //nolint:errcheck
		}
	})
	x.h10Started, x.h10Dog = &started, watchdog
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(func(c net.Conn) {
		if !started.CompareAndSwap(false, true) {
			return
		}
		watchdog.Stop()
		s.client = c
		raw := c
		if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
			raw = u.UnsafeConn()
		}
		s.c.client = raw // a client that leaves is noticed while the upstream is quiet
		if s.writeTO > 0 {
			c.SetWriteDeadline(time.Now().Add(s.writeTO)) //nolint:errcheck // a dead conn fails the write
		}
		_, err := c.Write(head)
		if err == nil {
			_, err = s.WriteTo(c)
		}
		s.CloseWithError(err) //nolint:errcheck
	})
}

// dropStream gives up the upstream's streaming body for another answer
// (the cache's stale entry, stale-if-error): the stream is closed, and
// its upstream connection with it, and an HTTP/1.0 client's connection is
// no longer taken over to send it.
func (x *exchange) dropStream() {
	s := x.stream
	if s == nil {
		return
	}
	x.stream = nil
	x.ctx.Response.ImmediateHeaderFlush = false
	if started := x.h10Started; started != nil {
		x.h10Started = nil
		x.ctx.Hijack(nil)
		x.ctx.HijackSetNoResponse(false)
		if started.CompareAndSwap(false, true) { // else the watchdog closed s
			x.h10Dog.Stop()
			s.CloseWithError(errStreamDropped) //nolint:errcheck
		}
		x.h10Dog = nil
		return
	}
	x.ctx.Response.ResetBody() // fasthttp closes s
}

// errStreamDropped closes a stream given up for another answer.
var errStreamDropped = errors.New("engine: upstream body dropped for another answer")

func (s *respStream) Read(p []byte) (int, error) {
	if s.prefix != nil {
		n := copy(p, s.prefix.B[s.poff:])
		s.poff += n
		if s.poff == len(s.prefix.B) {
			pool.Bodies.Put(s.prefix)
			s.prefix = nil
		}
		return n, nil
	}
	if s.done {
		return 0, io.EOF
	}
	var n int
	var err error
	switch s.kind {
	case fixedBody:
		if s.left == 0 {
			s.done = true
			return 0, io.EOF
		}
		if int64(len(p)) > s.left {
			p = p[:s.left]
		}
		n, err = s.c.br.Read(p)
		s.left -= int64(n)
		if err == io.EOF && s.left > 0 {
			err = io.ErrUnexpectedEOF
		}
		if s.left == 0 {
			s.done = true
		}
	case chunkedBody:
		n, err = s.cr.Read(p)
		if err == io.EOF {
			s.done = true
		}
	default:
		n, err = s.c.br.Read(p)
		if err == io.EOF {
			s.done = true
		}
	}
	if s.tee != nil && n > 0 {
		s.tee.write(p[:n])
	}
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// setTee starts the cache's capture of the body, from its first byte.
func (s *respStream) setTee(t *cacheTee) {
	s.tee = t
	if s.prefix != nil {
		t.write(s.prefix.B[s.poff:])
	}
}

// SupportsBodyWriteTo makes fasthttp's server call WriteTo.
func (s *respStream) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the body to the client through a pooled buffer, with an
// idle deadline on each write.
func (s *respStream) WriteTo(w io.Writer) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if s.client != nil && s.writeTO > 0 {
				s.client.SetWriteDeadline(time.Now().Add(s.writeTO)) //nolint:errcheck // a dead conn fails the write
			}
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr == nil && s.prefix == nil && s.c.br.Buffered() == 0 {
				// Nothing more from the upstream for now: what was
				// written goes to the client (an event stream's events
				// must not wait for a full buffer). Chunked writes are
				// flushed by fasthttp.
				if f, ok := w.(interface{ Flush() error }); ok {
					werr = f.Flush()
				}
			}
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// CloseWithError is called once by fasthttp after writing the body (err is
// the write's error) or when the response is dropped.
func (s *respStream) CloseWithError(err error) error {
	if t := s.tee; t != nil {
		s.tee = nil
		t.end(err == nil && s.done)
	}
	if s.prefix != nil {
		pool.Bodies.Put(s.prefix)
		s.prefix = nil
	}
	if c := s.c; c != nil {
		u := c.up
		c.idleTO = 0
		if err == nil && s.done && s.reusable {
			u.release(c)
		} else {
			u.discard(c)
		}
		if s.inflight != nil {
			s.inflight.Add(-1)
		}
	}
	*s = respStream{}
	respStreamPool.Put(s)
	return nil
}

// drainBody reads and discards a response body (mirror copies). It reports
// whether the connection may be reused.
func drainBody(c *uconn, h *fasthttp.ResponseHeader, isHead bool) (bool, error) {
	reusable := !h.ConnectionClose() && !c.closeTok
	if isHead || noBody(h.StatusCode()) {
		return reusable, nil
	}
	var r io.Reader
	switch n := h.ContentLength(); {
	case n >= 0:
		if _, err := c.br.Discard(n); err != nil {
			return false, noEOF(err)
		}
		return reusable, nil
	case n == -1:
		r = &chunkReader{br: c.br}
	default:
		r, reusable = c.br, false
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for {
		_, err := r.Read(*bp)
		if err == io.EOF {
			return reusable, nil
		}
		if err != nil {
			return false, err
		}
	}
}
