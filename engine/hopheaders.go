package engine

import (
	"bytes"
	"iter"
	"slices"
	"sync"

	"github.com/valyala/fasthttp"
)

// Hop-by-hop headers: the rewrite both directions share. A proxy removes
// them (RFC 9110 section 7.6.1), without reordering the lines of the fields
// that stay.

// Hop-by-hop headers (RFC 9110 §7.6.1) and the Proxy-* family; they describe
// one connection and are never forwarded, in either direction.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
	"Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Authentication-Info", "Proxy-Features", "Proxy-Instruction",
}

// requestOnlyHeaders are dropped from forwarded requests too: vkp has
// answered the client's Expect itself, and sends the body without waiting
// for a 100.
var requestOnlyHeaders = []string{"Expect"}

var strProxy = []byte("proxy-")

// stripHopRequest and stripHopResponse are the same steps for fasthttp's two
// header types. They stay two functions on purpose: a generic version over an
// interface allocates 8 times per request (the AllocsPerRun test caught it).
// Both look at the headers once (scanHop) and delete only what is there:
// most messages carry none of these headers, and each fasthttp Del
// normalizes its key and scans every header, which on small requests cost
// about 5% of vkp's CPU when it was done for every name.
//
// fasthttp's Del moves the last header into the deleted one's place, which
// can swap two lines of one field; a proxy must not change their order (RFC
// 9110 section 5.3: X-Forwarded-For, Via, Link or WWW-Authenticate mean
// something else reordered). So when a name that stays repeats and something
// is deleted, the repeated fields are saved first and put back in order
// after the deletions (repeated). stripHopRequest reports whether a name
// repeats, for rewriteForUpstream's own replacements.
func stripHopRequest(h *fasthttp.RequestHeader) (dup bool) {
	strip := uint32(1<<len(stripNames) - 1)
	set, proxy, dup := scanHop(h.All(), strip, apartInRequests)
	var cbuf [256]byte
	var conn []byte // every Connection line's value, copied: deletions move what they point into
	if set&hopConnection != 0 {
		var lines [4][]byte
		conn = joinLines(cbuf[:0], connectionLines(lines[:0], h.All()))
	}
	var rep *repeated
	if dup && (set != 0 || proxy) {
		rep = newRepeated()
		for k, v := range h.All() { // here, not in a helper: see newRepeated
			rep.collect(k, v, strip, apartInRequests)
		}
		rep.keepRepeated(conn)
	}
	// Headers named by Connection are hop-by-hop too.
	if len(conn) > 0 {
		delConnectionTokens(conn, h.All, h.DelBytes)
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
		rep.restore(h.DelBytes, h.AddBytesKV, nil)
	}
	return dup
}

func stripHopResponse(h *fasthttp.ResponseHeader) {
	strip := uint32(1<<len(hopHeaders) - 1) // requestOnlyHeaders stay in responses
	set, proxy, dup := scanHop(h.All(), strip, apartInResponses)
	var cbuf [256]byte
	var conn []byte
	if set&hopConnection != 0 {
		var lines [4][]byte
		conn = joinLines(cbuf[:0], connectionLines(lines[:0], h.All()))
	}
	var rep *repeated
	if dup && (set != 0 || proxy) {
		rep = newRepeated()
		for k, v := range h.All() { // here, not in a helper: see newRepeated
			rep.collect(k, v, strip, apartInResponses)
		}
		rep.keepRepeated(conn)
	}
	if len(conn) > 0 {
		delConnectionTokens(conn, h.All, h.DelBytes)
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
		rep.restore(h.DelBytes, h.AddBytesKV, nil)
	}
}

// stripNames is hopHeaders then requestOnlyHeaders: bit i of scanHop's set
// stands for stripNames[i].
var stripNames = append(append([]string(nil), hopHeaders...), requestOnlyHeaders...)

const hopConnection = 1 << 0 // hopHeaders[0] is Connection

// apartInRequests and apartInResponses are the names fasthttp keeps out of
// its header list in each kind of message (one value each, or a cookie
// list): deleting other headers never moves them, and re-adding one would
// replace, not add. They never count as repeated. Elsewhere they are
// ordinary headers (a request's Content-Encoding, a response's Cookie).
var (
	apartInRequests  = []string{"Host", "User-Agent", "Content-Type", "Content-Length", "Cookie"}
	apartInResponses = []string{"Content-Type", "Content-Length", "Content-Encoding", "Server", "Set-Cookie"}
)

func isApart(k []byte, apart []string) bool {
	for _, n := range apart {
		if asciiEqualFold(k, n) {
			return true
		}
	}
	return false
}

func isProxyName(k []byte) bool {
	return len(k) > len(strProxy) && asciiEqualFold(k[:len(strProxy)], "proxy-")
}

// scanHop reports which of the names in strip (a mask over stripNames) the
// headers hold, whether any header's name starts with Proxy- (those are all
// dropped, known or not), and whether a name that stays occurs more than
// once. A 64-bit filter on each name's length and ends finds candidates;
// only a hit compares names exactly, against the first 32 kept on the stack
// (a hit past them is taken as a repeat: the slow path is right for any
// message).
func scanHop(all headerSeq, strip uint32, apart []string) (set uint32, proxy, dup bool) {
	var seen [32][]byte
	var bits uint64
	n := 0
	for k := range all {
		if isProxyName(k) {
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
		if !stays || dup || len(k) == 0 {
			continue
		}
		bit := uint64(1) << ((uint(len(k))*7 + uint(k[0]|0x20) + uint(k[len(k)-1]|0x20)) & 63)
		if bits&bit != 0 && !isApart(k, apart) {
			dup = n == len(seen)
			for _, o := range seen[:n] {
				if bytes.EqualFold(o, k) {
					dup = true
					break
				}
			}
		}
		bits |= bit
		if n < len(seen) {
			seen[n] = k
			n++
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

// joinLines copies the lines into dst, comma-separated; beyond dst's
// capacity (over 256 bytes in all, rare) to the heap rather than cut.
func joinLines(dst []byte, lines [][]byte) []byte {
	for _, l := range lines {
		dst = append(append(dst, l...), ',')
	}
	return dst
}

// nextConnToken returns the first header name a Connection value (conn,
// as joinLines made it) names and the rest, skipping the ones that frame
// the message or name its target (Content-Length, Transfer-Encoding, Host):
// a client must not be able to make vkp forward a body under a length it
// did not send. tok is nil at the end.
func nextConnToken(conn []byte) (tok, rest []byte) {
	for len(conn) > 0 {
		if i := bytes.IndexByte(conn, ','); i >= 0 {
			tok, conn = conn[:i], conn[i+1:]
		} else {
			tok, conn = conn, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || asciiEqualFold(tok, "close") || asciiEqualFold(tok, "keep-alive") ||
			asciiEqualFold(tok, "content-length") || asciiEqualFold(tok, "transfer-encoding") || asciiEqualFold(tok, "host") {
			continue
		}
		return tok, conn
	}
	return nil, nil
}

// delConnectionTokens deletes the headers the Connection lines (conn, as
// joinLines made it) name. Names are matched by walking the headers without
// regard to case: fasthttp leaves names it cannot normalize (a space in
// them) as sent, where Del's normalized key would miss them. Rare (only
// Connection values other than close and keep-alive name anything), so it
// may allocate.
func delConnectionTokens(conn []byte, all func() iter.Seq2[[]byte, []byte], del func([]byte)) {
	for tok, rest := nextConnToken(conn); tok != nil; tok, rest = nextConnToken(rest) {
		// A copy: conn must not reach the iterator's body, which escapes
		// (and would take the caller's stack buffer to the heap with it).
		tok := bytes.Clone(tok)
		// Names differing in case are separate headers when fasthttp could
		// not normalize them: delete until none is left, but stop when a
		// delete changes nothing (a response's Content-Type reads as the
		// default once deleted), and after as many deletes as there are
		// headers.
		n := 0
		for range all() {
			n++
		}
		var prev []byte
		for range n {
			found := findName(all(), tok)
			if found == nil || bytes.Equal(found, prev) {
				break
			}
			del(found)
			prev = found
		}
	}
}

// findName returns a copy of the first header name equal to name without
// regard to case, or nil.
func findName(all headerSeq, name []byte) []byte {
	for k := range all {
		if bytes.EqualFold(k, name) {
			return bytes.Clone(k)
		}
	}
	return nil
}

// repeated holds, in order, the lines of the fields to put back after
// deletions. It is pooled: the slow path allocates nothing once warm.
type repeated struct {
	buf   []byte
	lines []lineSpan
}

type lineSpan struct{ k0, k1, v1 int } // name buf[k0:k1], value buf[k1:v1]

var repeatedPool = sync.Pool{New: func() any { return new(repeated) }}

// newRepeated returns an empty repeated from the pool. The caller passes
// each header line to collect, then calls keepRepeated: what stays is every
// line whose name occurs more than once, except stripped (a mask over
// stripNames) and Proxy-* lines, lines Connection names (they are all
// deleted) and the names fasthttp keeps apart. Callers range over their own
// h.All(): ranging over an iterator in a function the compiler does not
// inline makes the loop's body escape, two allocations per message.
func newRepeated() *repeated {
	r := repeatedPool.Get().(*repeated)
	r.buf, r.lines = r.buf[:0], r.lines[:0]
	return r
}

func (r *repeated) collect(k, v []byte, strip uint32, apart []string) {
	if isProxyName(k) || isApart(k, apart) || stripped(k, strip) {
		return
	}
	k0 := len(r.buf)
	r.buf = append(r.buf, k...)
	k1 := len(r.buf)
	r.buf = append(r.buf, v...)
	r.lines = append(r.lines, lineSpan{k0, k1, len(r.buf)})
}

// keepRepeated keeps the lines of names that repeat and that Connection
// does not name, in order.
func (r *repeated) keepRepeated(conn []byte) {
	kept := 0
	for i := range r.lines {
		if r.count(i) > 1 && !named(conn, r.name(r.lines[i])) {
			r.lines[kept] = r.lines[i] // kept <= i: see count
			kept++
		}
	}
	r.lines = r.lines[:kept]
}

// named reports whether a Connection value (as joinLines made it) names k.
func named(conn, k []byte) bool {
	for tok, rest := nextConnToken(conn); tok != nil; tok, rest = nextConnToken(rest) {
		if bytes.EqualFold(tok, k) {
			return true
		}
	}
	return false
}

func stripped(k []byte, strip uint32) bool {
	for i, n := range stripNames {
		if strip&(1<<i) != 0 && asciiEqualFold(k, n) {
			return true
		}
	}
	return false
}

func (r *repeated) name(l lineSpan) []byte { return r.buf[l.k0:l.k1] }

// count is how many lines share line i's name, stopping at two (a repeat
// is all saveRepeated needs to know). While saveRepeated filters in place,
// the slots before i hold kept lines only, which keeps the answer right: a
// kept line's copy stays in its slot, and a dropped line's name had no
// other line.
func (r *repeated) count(i int) int {
	n := 0
	for j := range r.lines {
		if bytes.EqualFold(r.name(r.lines[j]), r.name(r.lines[i])) {
			if n++; n > 1 {
				return n
			}
		}
	}
	return n
}

// restore deletes r's fields, except skip (fields the caller has rewritten),
// then adds their lines back in order, and returns r to its pool. Every Del
// comes before any Add: a Del after an Add could move an added line.
func (r *repeated) restore(del func([]byte), add func(k, v []byte), skip []string) {
	for _, l := range r.lines {
		if !slices.ContainsFunc(skip, func(s string) bool { return asciiEqualFold(r.name(l), s) }) {
			del(r.name(l)) // the second Del of a name finds nothing
		}
	}
	for _, l := range r.lines {
		if !slices.ContainsFunc(skip, func(s string) bool { return asciiEqualFold(r.name(l), s) }) {
			add(r.name(l), r.buf[l.k1:l.v1])
		}
	}
	repeatedPool.Put(r)
}

type headerSeq = func(yield func(k, v []byte) bool)

// delProxyHeaders removes every Proxy-* header. Rare, so it may allocate.
func delProxyHeaders(all headerSeq, del func([]byte)) {
	var names [][]byte
	for k := range all {
		if isProxyName(k) {
			names = append(names, bytes.Clone(k))
		}
	}
	for _, k := range names {
		del(k)
	}
}
