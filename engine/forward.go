package engine

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

var (
	strHTTP  = []byte("http")
	strHTTPS = []byte("https")
)

// forward sends the request to a destination of the route's cluster and
// leaves the upstream response in ctx.Response (whole, or as a body stream
// that owns the upstream connection until the server has written it; see
// roundtrip.go). The request is rewritten in place (it is the proxy's own
// copy): hop-by-hop headers out, X-Forwarded-* in; the request-target (the
// destination's base path + the client's raw path and query) and Host are
// set per attempt.
//
// Retries: an attempt that wrote nothing (no connection could be made) is
// retried whatever the method; one that wrote the request and got nothing
// back (reset, or closed before a byte of answer) only for an idempotent
// method whose body was not streamed. Never after any byte of a response
// (a malformed answer is not retried), never after a timeout, and at most
// once, on the next destination of the cluster when it has more than one.
// An idle connection the upstream closed meanwhile is no attempt: the peek
// before reuse finds it and a new connection is used (upstream.go).
func (e *Engine) forward(x *exchange) {
	ctx, r := x.ctx, x.route
	d := r.cluster.Pick(&ctx.Request)
	if d == nil {
		e.fail(x, ErrNoDestination, nil)
		ctx.Response.SetBodyRaw(r.cluster.noDest)
		return
	}
	// A body up to --body-buffer is read whole first (when --body-memory
	// allows): one write upstream, and the request can be retried. A longer
	// one is sent as it arrives, after the part read so far.
	if err := x.hold(e.opts.BodyBuffer); err != nil && !errors.Is(err, errBodyMemory) && !errors.Is(err, errBodyHeldPart) {
		e.fail(x, err, d)
		return
	}
	h := &ctx.Request.Header
	// The target and the client's Host, kept for each attempt.
	tb := pool.Scratch.Get()
	tb.B = appendOriginForm(tb.B[:0], &ctx.Request)
	nt := len(tb.B)
	tb.B = append(tb.B, h.Host()...)
	prepareUpstreamRequest(ctx, r.cfg.xf)
	start := time.Now()
	deadline := start.Add(r.timeout)
	sb := pool.Scratch.Get()
	var err error
	for attempt := 0; ; attempt++ {
		sb.B = sb.B[:0]
		if tb.B[0] != '*' {
			sb.B = append(sb.B, d.base...)
		}
		sb.B = append(sb.B, tb.B[:nt]...)
		setUpstreamHost(h, d, tb.B[nt:], r.cfg.KeepHost)
		var stage rtStage
		stage, err = x.roundTrip(d, sb.B, deadline)
		if p := r.cluster.passive; p != nil {
			p.record(d, transportFailure(err), ctx.Time().UnixNano())
		}
		if err == nil || attempt > 0 || !x.retryable(stage, err) {
			break
		}
		d = r.cluster.next(d)
	}
	pool.Scratch.Put(sb)
	pool.Scratch.Put(tb)
	x.dest = d
	x.upstream = time.Since(start)
	r.cluster.upstreamHist.Update(x.upstream.Seconds())
	if err != nil {
		e.fail(x, err, d)
		return
	}
	stripHopResponse(&ctx.Response.Header)
}

// retryable applies forward's retry rule to a failed attempt.
func (x *exchange) retryable(stage rtStage, err error) bool {
	if isTimeout(err) || errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, errNoFreeConns) || isClientErr(err) {
		return false
	}
	switch stage {
	case rtNone:
		return true
	case rtSent:
		return !x.body.started && idempotent(x.ctx.Request.Header.Method())
	}
	return false
}

// idempotent reports the methods RFC 9110 section 9.2.2 lets a client (or
// proxy) repeat.
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// appendOriginForm appends the request-target to send upstream: the
// client's raw path (never normalised) and query, whatever form the client
// used (origin-form, or absolute-form as sent to a proxy).
func appendOriginForm(dst []byte, req *fasthttp.Request) []byte {
	if raw := req.Header.RequestURI(); len(raw) == 1 && raw[0] == '*' {
		return append(dst, '*') // OPTIONS *: the server as a whole
	}
	u := req.URI()
	p := u.PathOriginal()
	if len(p) == 0 || p[0] != '/' {
		dst = append(dst, '/')
	}
	dst = append(dst, p...)
	if q := u.QueryString(); len(q) > 0 {
		dst = append(append(dst, '?'), q...)
	}
	return dst
}

// setUpstreamHost sets the Host an attempt on d sends, as VKProxy does: the
// destination's Host setting, else its address's authority; the client's
// Host only when the route asks for it (the transform
// RequestHeaderOriginalHost) and there is one. X-Forwarded-Host carries the
// client's in any case.
func setUpstreamHost(h *fasthttp.RequestHeader, d *Destination, clientHost []byte, keep bool) {
	switch {
	case keep && len(clientHost) > 0:
		h.SetHostBytes(clientHost)
	case d.host != "":
		h.SetHost(d.host)
	default:
		h.SetHost(d.authority)
	}
}

// ambiguousPath reports whether a raw request path has "." or ".."
// segments, literal or percent-encoded. Routes match the normalised path
// while the raw one is forwarded, so such a path could match one route and
// mean another upstream ("/public/%2e%2e/admin"); it is refused with 400.
func ambiguousPath(p []byte) bool {
	if bytes.IndexByte(p, '.') < 0 && bytes.IndexByte(p, '%') < 0 {
		return false
	}
	for len(p) > 0 {
		var seg []byte
		if i := bytes.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			seg, p = p, nil
		}
		dots := 0
		for len(seg) > 0 {
			switch {
			case seg[0] == '.':
				seg = seg[1:]
			case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
				seg = seg[3:]
			default:
				dots = 3 // anything else: not a dot-segment
				seg = nil
				continue
			}
			dots++
		}
		if dots == 1 || dots == 2 {
			return true
		}
	}
	return false
}

// prepareUpstreamRequest rewrites ctx.Request's header for an upstream.
func prepareUpstreamRequest(ctx *fasthttp.RequestCtx, xf *xForwarded) {
	var ipBuf [64]byte
	rewriteForUpstream(&ctx.Request.Header, appendRemoteIP(ipBuf[:0], ctx.RemoteAddr()), ctx.IsTLS(), xf)
}

// xfAction is what vkp does with one X-Forwarded-* field (the route
// transform "X-Forwarded", as in VKProxy/YARP).
type xfAction uint8

const (
	xfAppend xfAction = iota // the client's lines, joined, then vkp's value
	xfSet                    // vkp's value only
	xfRemove                 // none: the client's lines go
	xfOff                    // the client's lines pass as they are
)

// xForwarded is a route's handling of X-Forwarded-For, -Proto and -Host
// (in forwardedNames' order), made once per config.
type xForwarded struct {
	act   [3]xfAction
	names []string // the fields it rewrites: all but the Off ones
}

func newXForwarded(forAct, protoAct, hostAct xfAction) *xForwarded {
	x := &xForwarded{act: [3]xfAction{forAct, protoAct, hostAct}}
	for i, n := range forwardedNames {
		if x.act[i] != xfOff {
			x.names = append(x.names, n)
		}
	}
	return x
}

// defaultXForwarded is vkp's default: the client's address appended to
// X-Forwarded-For, -Proto and -Host set (README: "Decisions where VKProxy
// differs").
var defaultXForwarded = newXForwarded(xfAppend, xfSet, xfSet)

// rewriteForUpstream prepares a request header for an upstream, on the main
// path and for mirror copies alike: hop-by-hop headers out, X-Forwarded-*
// as xf says (nil: the default). The target and Host are the caller's, per
// destination.
func rewriteForUpstream(h *fasthttp.RequestHeader, clientIP []byte, isTLS bool, xf *xForwarded) {
	if xf == nil {
		xf = defaultXForwarded
	}
	// Host() is the header's own host field: header deletions below do not
	// move it.
	clientHost := h.Host()
	dup := stripHopRequest(h)
	proto := strHTTP
	if isTLS {
		proto = strHTTPS
	}
	own := [3][]byte{clientIP, proto, clientHost}

	// Appended, the client's address goes after every X-Forwarded-For line,
	// joined into one: appended to the first of several lines, it would sit
	// before addresses the client wrote, and a service taking the last
	// entry as the client's would take one the client chose. For the same
	// reason each field vkp writes ends up as one line.
	sb := pool.Scratch.Get()
	sb.B = sb.B[:0]
	var span [3][2]int // value i is sb.B[span[i][0]:span[i][1]]; -1: none
	del := false
	for i, name := range forwardedNames {
		act := xf.act[i]
		span[i] = [2]int{-1, -1}
		if act == xfOff {
			continue
		}
		if i == 2 && len(clientHost) == 0 {
			act = xfRemove // no X-Forwarded-Host without a Host to report: the client's must not pass as vkp's
		}
		n := len(h.PeekAll(name))
		start := len(sb.B)
		switch act {
		case xfAppend:
			for _, v := range h.PeekAll(name) {
				if len(v) > 0 {
					sb.B = append(append(sb.B, v...), ", "...)
				}
			}
			fallthrough
		case xfSet:
			sb.B = append(sb.B, own[i]...)
			span[i] = [2]int{start, len(sb.B)}
		}
		// SetBytesV replaces a field's first line only: a field the
		// client repeated, or one to remove, is deleted whole first.
		if n > 1 || (act == xfRemove && n > 0) {
			del = true
		}
	}
	// When some name repeats, deletions go through repeated to keep the
	// order of the other repeated fields (Del moves headers).
	var rep *repeated
	if del {
		if dup {
			rep = newRepeated()
			for k, v := range h.All() {
				rep.collect(k, v, 1<<len(stripNames)-1, apartInRequests)
			}
			rep.keepRepeated(nil)
		}
		for _, k := range xf.names {
			h.Del(k)
		}
	}
	for i, name := range forwardedNames {
		if span[i][0] >= 0 {
			h.SetBytesV(name, sb.B[span[i][0]:span[i][1]])
		}
	}
	if rep != nil {
		rep.restore(h.DelBytes, h.AddBytesKV, xf.names)
	}
	pool.Scratch.Put(sb)
}

// appendRemoteIP appends the client IP without allocating.
func appendRemoteIP(dst []byte, a net.Addr) []byte {
	var ip net.IP
	switch v := a.(type) {
	case *net.TCPAddr:
		ip = v.IP
	case *net.UDPAddr:
		ip = v.IP
	default:
		return append(dst, "unknown"...)
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return append(dst, "unknown"...)
	}
	return addr.Unmap().AppendTo(dst)
}

// forwardedNames are the fields rewriteForUpstream sets.
var forwardedNames = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}
