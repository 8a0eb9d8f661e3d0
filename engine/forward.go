package engine

import (
	"bytes"
	"iter"
	"net"
	"net/netip"
	"slices"
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
	dup := stripHopRequest(h)

	// The client's address goes after every X-Forwarded-For line, joined
	// into one: appended to the first of several lines, it would sit
	// before addresses the client wrote, and a service taking the last
	// entry as the client's would take one the client chose. For the same
	// reason X-Forwarded-Proto and -Host end up as one line each.
	sb := pool.Scratch.Get()
	sb.B = sb.B[:0]
	for _, v := range h.PeekAll("X-Forwarded-For") {
		if len(v) > 0 {
			sb.B = append(append(sb.B, v...), ", "...)
		}
	}
	sb.B = append(sb.B, clientIP...)
	proto := strHTTP
	if isTLS {
		proto = strHTTPS
	}
	var rep *repeated
	if dup {
		// Some name repeats: delete the forwarding fields whole, and keep
		// the order of the other repeated fields (Del moves headers).
		rep = saveRepeated(h.All())
		h.Del("X-Forwarded-For")
		h.Del("X-Forwarded-Proto")
		if len(clientHost) > 0 {
			h.Del("X-Forwarded-Host")
		}
	}
	h.SetBytesV("X-Forwarded-For", sb.B)
	h.SetBytesV("X-Forwarded-Proto", proto)
	if len(clientHost) > 0 {
		h.SetBytesV("X-Forwarded-Host", clientHost)
	}
	if rep != nil {
		rewritten := []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}
		if len(clientHost) == 0 {
			rewritten = rewritten[:2]
		}
		rep.restore(h.All, h.DelBytes, h.AddBytesKV, rewritten...)
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
func stripHopRequest(h *fasthttp.RequestHeader) (dup bool) {
	set, proxy, dup := scanHop(h.All(), 1<<len(stripNames)-1)
	var rep *repeated
	if dup && (set != 0 || proxy) {
		rep = saveRepeated(h.All())
	}
	// Headers named by Connection are hop-by-hop too.
	if set&hopConnection != 0 {
		var lines [4][]byte
		delConnectionTokens(connectionLines(lines[:0], h.All()), h.Del)
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
	if rep != nil {
		rep.restore(h.All, h.DelBytes, h.AddBytesKV)
	}
	return dup
}

func stripHopResponse(h *fasthttp.ResponseHeader) {
	// requestOnlyHeaders stay in responses.
	set, proxy, dup := scanHop(h.All(), 1<<len(hopHeaders)-1)
	var rep *repeated
	if dup && (set != 0 || proxy) {
		rep = saveRepeated(h.All())
	}
	if set&hopConnection != 0 {
		var lines [4][]byte
		delConnectionTokens(connectionLines(lines[:0], h.All()), h.Del)
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
	if rep != nil {
		rep.restore(h.All, h.DelBytes, h.AddBytesKV)
	}
}

// stripNames is hopHeaders then requestOnlyHeaders: bit i of scanHop's set
// stands for stripNames[i].
var stripNames = append(append([]string(nil), hopHeaders...), requestOnlyHeaders...)

const hopConnection = 1 << 0 // hopHeaders[0] is Connection

// scanHop reports which of the names in strip (a mask over stripNames) the
// headers hold, whether any header's name starts with Proxy- (those are all
// dropped, known or not), and whether a name that stays occurs more than
// once. Names are compared exactly, against up to 32 kept on the stack;
// more headers than that are taken as repeating (the slow path is correct
// for any message).
func scanHop(all headerSeq, strip uint32) (set uint32, proxy, dup bool) {
	var seen [32][]byte
	n := 0
	for k := range all {
		if len(k) > len(strProxy) && asciiEqualFold(k[:len(strProxy)], "proxy-") {
			proxy = true
			continue
		}
		stays := true
		for i, name := range stripNames {
			if strip&(1<<i) != 0 && asciiEqualFold(k, name) {
				set |= 1 << i
				stays = false
				break
			}
		}
		if !stays || dup {
			continue
		}
		for _, o := range seen[:n] {
			if bytes.EqualFold(o, k) {
				dup = true
			}
		}
		if n < len(seen) {
			seen[n] = k
			n++
		} else {
			dup = true
		}
	}
	return set, proxy, dup
}

// connectionLines appends the value of every Connection line: PeekAll
// reports only "close" once a Connection: close line has been seen.
func connectionLines(dst [][]byte, all headerSeq) [][]byte {
	for k, v := range all {
		if asciiEqualFold(k, "Connection") {
			dst = append(dst, v)
		}
	}
	return dst
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

// restore puts r's fields back in order, except the skip ones (fields the
// caller has rewritten) and fields deleted meanwhile (named by Connection;
// presence is looked up in all, since Peek cannot tell an empty line from
// none). All of them are deleted before any line is added back: a Del after
// an Add could move an added line.
func (r *repeated) restore(all func() iter.Seq2[[]byte, []byte], del func([]byte), add func(k, v []byte), skip ...string) {
	keep := r.kv[:0]
	for _, l := range r.kv {
		if !slices.ContainsFunc(skip, func(s string) bool { return asciiEqualFold(l[0], s) }) && present(all(), l[0]) {
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

func present(all headerSeq, name []byte) bool {
	for k := range all {
		if bytes.EqualFold(k, name) {
			return true
		}
	}
	return false
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
