package engine

import (
	"bytes"
	"net"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// Hop-by-hop headers (RFC 9110 §7.6.1) and the Proxy-* family; they describe
// one connection and are never forwarded, in either direction.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
	"Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Authentication-Info", "Proxy-Features", "Proxy-Instruction",
}

// requestOnlyHeaders are dropped from forwarded requests too: vkp has read
// the whole body already, so the upstream must not wait to send a 100.
var requestOnlyHeaders = []string{"Expect"}

var (
	strHTTP  = []byte("http")
	strHTTPS = []byte("https")
	strProxy = []byte("proxy-")
)

// forward sends ctx's request to a destination of the route's cluster and
// leaves the upstream response in ctx.Response. The request is rewritten in
// place (it is the proxy's own copy): hop-by-hop headers out, X-Forwarded-*
// in, base path and Host applied.
//
// Retries (retryUpstream): a request refused by a kept-alive connection the
// upstream had closed while idle is sent again whatever its method, since
// nothing of it was written (liveConn); after any other failure only
// idempotent ones (GET, HEAD, PUT) are, as fasthttp does, and a POST that
// may have reached the upstream never is.
// Responses are read whole into ctx.Response's buffer (one read, one write,
// never a second copy) and bounded by nothing but the route Timeout.
func (e *Engine) forward(ctx *fasthttp.RequestCtx, r *Route) {
	d := r.cluster.Pick(ctx)
	if d == nil {
		e.fail(ctx, ErrNoDestination, r, nil)
		return
	}
	req := &ctx.Request
	prepareUpstreamRequest(ctx, d)

	d.up.inflight.Add(1)
	err := d.up.hc.DoDeadline(req, &ctx.Response, time.Now().Add(r.timeout))
	d.up.inflight.Add(-1)
	if err != nil {
		e.fail(ctx, err, r, d)
		return
	}
	stripHopResponse(&ctx.Response.Header)
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

// prepareUpstreamRequest rewrites ctx.Request for destination d.
func prepareUpstreamRequest(ctx *fasthttp.RequestCtx, d *Destination) {
	var ipBuf [64]byte
	rewriteForUpstream(&ctx.Request, d, appendRemoteIP(ipBuf[:0], ctx.RemoteAddr()), ctx.IsTLS())
}

// rewriteForUpstream prepares req for destination d, on the main path and
// for mirror copies alike: hop-by-hop headers out, X-Forwarded-For (client
// appended), -Proto and -Host set, d's base path and Host applied.
func rewriteForUpstream(req *fasthttp.Request, d *Destination, clientIP []byte, isTLS bool) {
	h := &req.Header
	// Host() is the header's own host field: header deletions below do not
	// move it, and it is read before SetHost replaces it.
	clientHost := h.Host()
	stripHopRequest(h)

	// The client's address goes after every X-Forwarded-For line, joined
	// into one: appended to the first of several lines, it would sit
	// before addresses the client wrote, and a service taking the last
	// entry as the client's would take one the client chose.
	sb := pool.Scratch.Get()
	sb.B = sb.B[:0]
	xff := h.PeekAll("X-Forwarded-For")
	for _, v := range xff {
		if len(v) > 0 {
			sb.B = append(append(sb.B, v...), ", "...)
		}
	}
	sb.B = append(sb.B, clientIP...)
	if len(xff) > 1 {
		rep := saveRepeated(h.All())
		h.Del("X-Forwarded-For")
		h.SetBytesV("X-Forwarded-For", sb.B)
		rep.restore("X-Forwarded-For", h.PeekBytes, h.DelBytes, h.AddBytesKV)
	} else {
		h.SetBytesV("X-Forwarded-For", sb.B)
	}
	if isTLS {
		h.SetBytesV("X-Forwarded-Proto", strHTTPS)
	} else {
		h.SetBytesV("X-Forwarded-Proto", strHTTP)
	}
	if len(clientHost) > 0 {
		h.SetBytesV("X-Forwarded-Host", clientHost)
	}

	uri := req.URI()
	if len(d.base) > 0 {
		sb.B = append(append(sb.B[:0], d.base...), uri.PathOriginal()...)
		uri.SetPathBytes(sb.B)
	}
	pool.Scratch.Put(sb)
	if d.tls {
		uri.SetSchemeBytes(strHTTPS)
	} else {
		uri.SetSchemeBytes(strHTTP)
	}
	if d.host != "" {
		h.SetHost(d.host)
	}
	// Send the Host header as set above, not the URI's authority.
	req.UseHostHeader = true
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

// stripHopRequest and stripHopResponse are the same steps for fasthttp's two
// header types. They stay two functions on purpose: a generic version over an
// interface allocates 8 times per request (the AllocsPerRun test caught it).
// Both look at the headers once (scanHop) and delete only what is there:
// most messages carry none of these headers, and each fasthttp Del
// normalizes its key and scans every header, which on small requests cost
// about 5% of vkp's CPU when it was done for every name.
func stripHopRequest(h *fasthttp.RequestHeader) {
	set, proxy, dup := scanHop(h.All())
	var rep *repeated
	if dup && (set != 0 || proxy) {
		rep = saveRepeated(h.All())
	}
	// Headers named by Connection are hop-by-hop too.
	if set&hopConnection != 0 {
		delConnectionTokens(h.PeekAll("Connection"), h.Del)
	}
	for i, k := range stripNames {
		if set&(1<<i) != 0 {
			h.Del(k)
		}
	}
	h.ResetConnectionClose()
	// A body without Content-Type is forwarded without one (fasthttp would
	// add application/octet-stream).
	h.SetNoDefaultContentType(true)
	if proxy {
		delProxyHeaders(h.All(), h.DelBytes)
	}
	rep.restore("", h.PeekBytes, h.DelBytes, h.AddBytesKV)
}

func stripHopResponse(h *fasthttp.ResponseHeader) {
	set, proxy, dup := scanHop(h.All())
	set &= 1<<len(hopHeaders) - 1 // requestOnlyHeaders stay in responses
	var rep *repeated
	if dup && (set != 0 || proxy) {
		rep = saveRepeated(h.All())
	}
	if set&hopConnection != 0 {
		delConnectionTokens(h.PeekAll("Connection"), h.Del)
	}
	for i, k := range stripNames {
		if set&(1<<i) != 0 {
			h.Del(k)
		}
	}
	// An upstream "Connection: close" ends the upstream connection only;
	// the client's keep-alive is the server's business.
	h.ResetConnectionClose()
	// The client's Reset of the response cleared the server's setting; an
	// origin that sent no Content-Type must not get one invented.
	h.SetNoDefaultContentType(true)
	if proxy {
		delProxyHeaders(h.All(), h.DelBytes)
	}
	rep.restore("", h.PeekBytes, h.DelBytes, h.AddBytesKV)
}

// stripNames is hopHeaders then requestOnlyHeaders: bit i of scanHop's set
// stands for stripNames[i].
var stripNames = append(append([]string(nil), hopHeaders...), requestOnlyHeaders...)

const hopConnection = 1 << 0 // hopHeaders[0] is Connection

// scanHop reports which of stripNames the headers hold, whether any
// header's name starts with Proxy- (those are all dropped, known or not),
// and whether some other name may occur more than once (a 64-bit filter on
// the name's length and ends: false positives only cost the slow path).
func scanHop(all headerSeq) (set uint32, proxy, dup bool) {
	var seen uint64
	for k := range all {
		if len(k) > len(strProxy) && asciiEqualFold(k[:len(strProxy)], "proxy-") {
			proxy = true
			continue
		}
		hop := false
		for i, name := range stripNames {
			if asciiEqualFold(k, name) {
				set |= 1 << i
				hop = true
				break
			}
		}
		if !hop && len(k) > 0 {
			bit := uint64(1) << ((uint(len(k))*7 + uint(k[0]|0x20) + uint(k[len(k)-1]|0x20)) & 63)
			dup = dup || seen&bit != 0
			seen |= bit
		}
	}
	return set, proxy, dup
}

// repeated keeps, in order, the lines of the header names that occur more
// than once. fasthttp's Del moves the last header into the deleted one's
// place, which can swap two lines of one field, and a proxy must not change
// their order (RFC 9110 section 5.3): X-Forwarded-For, Via, Link or
// WWW-Authenticate mean something else reordered. restore deletes each such
// field and adds its lines back in their first order. Only messages that
// repeat a name and lose a header take this path, so it may allocate.
type repeated struct{ kv [][2][]byte }

func saveRepeated(all headerSeq) *repeated {
	var lines [][2][]byte
	for k, v := range all {
		lines = append(lines, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
	}
	r := &repeated{}
	for _, l := range lines {
		n := 0
		for _, m := range lines {
			if bytes.EqualFold(l[0], m[0]) {
				n++
			}
		}
		if n > 1 {
			r.kv = append(r.kv, l)
		}
	}
	return r
}

// restore puts r's fields back in order, except skip (a field the caller
// has rewritten) and fields deleted meanwhile (named by Connection). All of
// them are deleted before any line is added back: a Del after an Add could
// move an added line.
func (r *repeated) restore(skip string, peek func([]byte) []byte, del func([]byte), add func(k, v []byte)) {
	if r == nil {
		return
	}
	keep := r.kv[:0]
	for _, l := range r.kv {
		if !asciiEqualFold(l[0], skip) && peek(l[0]) != nil {
			keep = append(keep, l)
		}
	}
	for _, l := range keep {
		del(l[0]) // the second Del of a name finds nothing
	}
	for _, l := range keep {
		add(l[0], l[1])
	}
}

// delConnectionTokens deletes the headers the Connection lines name, except
// the ones that frame the message or name its target (Content-Length,
// Transfer-Encoding, Host): a client must not be able to make vkp forward a
// body under a length it did not send. Every Connection line counts, not
// just the first. The values are copied first (deleting headers reshuffles
// the buffer they point into); over 256 bytes in all, rare, they are copied
// to the heap rather than cut mid-token.
func delConnectionTokens(vals [][]byte, del func(string)) {
	n := 0
	for _, v := range vals {
		n += len(v) + 1
	}
	if n == 0 {
		return
	}
	var cbuf [256]byte
	v := cbuf[:0]
	if n > len(cbuf) {
		v = make([]byte, 0, n)
	}
	for _, x := range vals {
		v = append(append(v, x...), ',')
	}
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || asciiEqualFold(tok, "close") || asciiEqualFold(tok, "keep-alive") ||
			asciiEqualFold(tok, "content-length") || asciiEqualFold(tok, "transfer-encoding") || asciiEqualFold(tok, "host") {
			continue
		}
		del(string(tok)) // rare path: only when Connection names extra headers
	}
}

type headerSeq = func(yield func(k, v []byte) bool)

// delProxyHeaders removes every Proxy-* header. Rare, so it may allocate.
func delProxyHeaders(all headerSeq, del func([]byte)) {
	var names [][]byte
	for k := range all {
		if len(k) > len(strProxy) && asciiEqualFold(k[:len(strProxy)], "proxy-") {
			names = append(names, bytes.Clone(k))
		}
	}
	for _, k := range names {
		del(k)
	}
}
