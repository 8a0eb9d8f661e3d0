package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// Cache entries are stored as one byte string, the same in every store:
//
//	version  1 byte (entryVersion)
//	kind     1 byte: entryResponse or entryIndex
//
// a response:
//
//	flags     1 byte (entMustRevalidate, entNoCache, ...)
//	stored    8 bytes, little-endian: when the response arrived (unix ns)
//	age       uvarint: its corrected initial age (ns, RFC 9111 section 4.2.3)
//	lifetime  uvarint: its freshness lifetime (ns)
//	swr, sie  uvarint each: stale-while-revalidate and stale-if-error (ns)
//	status    uvarint
//	head      uvarint length, then the response's header block as sent on
//	          the wire ("HTTP/1.1 200 OK\r\nName: value\r\n...\r\n"), in
//	          the order received, without Content-Length, Age or hop-by-hop
//	          lines: a hit is parsed from it as fasthttp parses an upstream's
//	          answer, so Date and every other line come back as they were
//	vary      uvarint length, then the names and the request's normalized
//	          values of the fields the response varies on
//	          (appendVaryValues)
//	body      the rest of the entry
//
// a variant index (stored under a URI's key when its response has Vary):
//
//	names     uvarint length, then the lower-cased field names, sorted,
//	          comma-separated
//
// The body is last so a response streamed from the upstream is appended to
// its head as it arrives, without a length known in advance.
const (
	entryVersion  = 1
	entryResponse = 0
	entryIndex    = 1
)

// Entry flags.
const (
	entMustRevalidate = 1 << iota // must-revalidate, proxy-revalidate or s-maxage: never served stale
	entNoCache                    // no-cache: validated before every use
	entValidators                 // has ETag or Last-Modified
	entImmutable
)

var errBadEntry = errors.New("engine: cache entry is malformed")

var strDate = []byte("Date")

// cacheEntry is a decoded cache entry. Its slices point into the bytes it
// was decoded from.
type cacheEntry struct {
	kind     uint8
	flags    uint8
	stored   int64 // unix ns
	age      time.Duration
	lifetime time.Duration
	swr, sie time.Duration
	status   int
	head     []byte // the header block, status line to the blank line
	hdrs     []byte // its header lines
	vary     []byte
	body     []byte
	names    []byte // entryIndex: the Vary names

	// hdr, when not nil, is head already parsed as writeTo parses it
	// (a hot copy's, see decodedHit); shared and never changed.
	hdr *fasthttp.ResponseHeader
	// capture asks writeTo to keep, in pend, the entry with the header a
	// full answer parsed: a hot copy not decoded yet (see publish). Built
	// only then, so answers that never need it (304s) allocate nothing.
	capture bool
	pend    *decodedHit
}

// entryMeta is what an entry's head holds besides the header lines.
type entryMeta struct {
	flags    uint8
	stored   int64
	age      time.Duration
	lifetime time.Duration
	swr, sie time.Duration
}

// currentAge is the entry's age at now (RFC 9111 section 4.2.3).
func (e *cacheEntry) currentAge(now int64) time.Duration {
	return e.age + time.Duration(max(now-e.stored, 0))
}

// appendEntry appends a response entry up to its body (whose bytes
// follow): meta, status, the header lines (appendFields' form) and the
// variant's normalized request values.
func appendEntry(dst []byte, m *entryMeta, status int, lines, vary []byte) []byte {
	dst = append(dst, entryVersion, entryResponse, m.flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.stored))
	for _, d := range [...]time.Duration{m.age, m.lifetime, m.swr, m.sie} {
		dst = binary.AppendUvarint(dst, uint64(max(d, 0)))
	}
	dst = binary.AppendUvarint(dst, uint64(status))
	var sl [64]byte
	line := appendStatusLine(sl[:0], status)
	dst = binary.AppendUvarint(dst, uint64(len(line)+len(lines)+2))
	dst = append(append(append(dst, line...), lines...), "\r\n"...)
	dst = binary.AppendUvarint(dst, uint64(len(vary)))
	return append(dst, vary...)
}

func appendStatusLine(dst []byte, status int) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, fasthttp.StatusMessage(status)...)
	return append(dst, "\r\n"...)
}

// appendFields appends the header lines of h an entry keeps, as
// "Name: value\r\n".
func appendFields(dst []byte, h *fasthttp.ResponseHeader) []byte {
	for k, v := range h.All() {
		if storedHeader(k) {
			dst = appendField(dst, k, v)
		}
	}
	return dst
}

func appendField(dst, k, v []byte) []byte {
	dst = append(dst, k...)
	dst = append(dst, ": "...)
	dst = append(dst, v...)
	return append(dst, "\r\n"...)
}

// storedHeader reports whether a response header line goes into an entry:
// the body's length is the entry's own, Age is computed when served, and
// hop-by-hop fields were stripped before.
func storedHeader(k []byte) bool {
	return !asciiEqualFold(k, "Content-Length") && !asciiEqualFold(k, "Age") &&
		!asciiEqualFold(k, "Transfer-Encoding") && !asciiEqualFold(k, "Connection")
}

// appendIndexEntry appends a variant index entry.
func appendIndexEntry(dst, names []byte) []byte {
	dst = append(dst, entryVersion, entryIndex)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	return append(dst, names...)
}

// decodeEntry decodes b (which the entry then points into). Malformed or
// other-version bytes are an error: the caller treats them as a miss.
func decodeEntry(b []byte) (e cacheEntry, err error) {
	if len(b) < 2 || b[0] != entryVersion {
		return e, errBadEntry
	}
	e.kind = b[1]
	b = b[2:]
	switch e.kind {
	case entryIndex:
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return e, errBadEntry
		}
		e.names = b[k : k+int(n)]
		return e, nil
	case entryResponse:
	default:
		return e, errBadEntry
	}
	if len(b) < 9 {
		return e, errBadEntry
	}
	e.flags = b[0]
	e.stored = int64(binary.LittleEndian.Uint64(b[1:9]))
	b = b[9:]
	var vals [5]uint64
	for i := range vals {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return e, errBadEntry
		}
		vals[i], b = v, b[k:]
	}
	if vals[4] < 100 || vals[4] > 999 || vals[0] > 1<<62 || vals[1] > 1<<62 || vals[2] > 1<<62 || vals[3] > 1<<62 {
		return e, errBadEntry
	}
	e.age, e.lifetime, e.swr, e.sie = time.Duration(vals[0]), time.Duration(vals[1]), time.Duration(vals[2]), time.Duration(vals[3])
	e.status = int(vals[4])
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return e, errBadEntry
	}
	e.head = b[k : k+int(n)]
	b = b[k+int(n):]
	// The block: a status line, lines, a blank line; each line well
	// formed, so that nextField and fasthttp's parser can take it.
	i := bytes.Index(e.head, strCRLF)
	if i < 0 || !bytes.HasPrefix(e.head, strHTTP11) || !bytes.HasSuffix(e.head[i:], []byte("\r\n\r\n")) {
		return e, errBadEntry
	}
	e.hdrs = e.head[i+2 : len(e.head)-2]
	for h := e.hdrs; len(h) > 0; {
		j := bytes.Index(h, strCRLF)
		if j < 0 {
			return e, errBadEntry
		}
		c := bytes.IndexByte(h[:j], ':')
		if c <= 0 || !isTokenBytes(h[:c]) || bytes.IndexByte(h[:j], '\r') >= 0 || bytes.IndexByte(h[:j], '\n') >= 0 || bytes.IndexByte(h[:j], 0) >= 0 {
			return e, errBadEntry
		}
		h = h[j+2:]
	}
	l, k := binary.Uvarint(b)
	if k <= 0 || l > uint64(len(b)-k) {
		return e, errBadEntry
	}
	e.vary = b[k : k+int(l)]
	e.body = b[k+int(l):]
	return e, nil
}

// nextField returns the first header line of hdrs (as decoded: well
// formed) and the rest.
func nextField(hdrs []byte) (k, v, rest []byte) {
	j := bytes.Index(hdrs, strCRLF)
	line := hdrs[:j]
	c := bytes.IndexByte(line, ':')
	return line[:c], trimOWS(line[c+1:]), hdrs[j+2:]
}

// field returns the entry's first value of a header, or nil.
func (e *cacheEntry) field(name string) []byte {
	for h := e.hdrs; len(h) > 0; {
		var k, v []byte
		k, v, h = nextField(h)
		if asciiEqualFold(k, name) {
			return v
		}
	}
	return nil
}

// fieldLines appends every value of a header to dst.
func (e *cacheEntry) fieldLines(dst [][]byte, name string) [][]byte {
	for h := e.hdrs; len(h) > 0; {
		var k, v []byte
		k, v, h = nextField(h)
		if asciiEqualFold(k, name) {
			dst = append(dst, v)
		}
	}
	return dst
}

// headReaders parse entries' header blocks into responses.
var headReaders = sync.Pool{New: func() any {
	r := &headReader{}
	r.br = bufio.NewReaderSize(&r.src, 32<<10)
	return r
}}

type headReader struct {
	src bytes.Reader
	br  *bufio.Reader
}

// writeTo sets resp to the entry: status, header lines and body (not
// copied: the entry's bytes must stay unchanged until resp is written).
// The header is parsed from the stored block, so it comes back as the
// upstream sent it, Date included. When only is not nil, the answer is a
// 304 with just those header fields.
func (e *cacheEntry) writeTo(resp *fasthttp.Response, only []string) error {
	resp.ResetBody()
	if only == nil && e.hdr != nil {
		e.hdr.CopyTo(&resp.Header)
		resp.SetBodyRaw(e.body)
		return nil
	}
	head := e.head
	var sb *pool.Buffer
	if only != nil {
		sb = pool.Scratch.Get()
		sb.B = appendStatusLine(sb.B[:0], fasthttp.StatusNotModified)
		for hd := e.hdrs; len(hd) > 0; {
			var k, v []byte
			k, v, hd = nextField(hd)
			if inList(k, only) {
				sb.B = appendField(sb.B, k, v)
			}
		}
		sb.B = append(sb.B, strCRLF...)
		head = sb.B
	}
	err := parseHead(&resp.Header, head)
	if sb != nil {
		pool.Scratch.Put(sb)
	}
	if err != nil {
		return err
	}
	if only == nil {
		resp.Header.SetStatusCode(e.status)
		if e.capture && e.pend == nil {
			// Taken from the response, not parsed into a blank header,
			// so that it carries the server's settings (NoDefaultDate)
			// that CopyTo will copy back.
			d := &decodedHit{e: *e}
			d.e.capture = false
			resp.Header.CopyTo(&d.hdr)
			d.e.hdr = &d.hdr
			e.pend = d
		}
		resp.SetBodyRaw(e.body)
	}
	return nil
}

// parseHead sets h to a stored header block, as fasthttp parses an
// upstream's answer.
func parseHead(h *fasthttp.ResponseHeader, head []byte) error {
	r := headReaders.Get().(*headReader)
	r.src.Reset(head)
	r.br.Reset(&r.src)
	err := h.Read(r.br)
	r.src.Reset(nil)
	headReaders.Put(r)
	if err != nil {
		return err
	}
	// A block without Content-Length reads as a body delimited by the
	// connection's close; the body's length is known when it is served.
	h.ResetConnectionClose()
	return nil
}

// decodedHit is a hot copy decoded once for all the hits that use it: the
// entry, and for a response the header its first full answer parsed.
// Never changed once published (sharedHits.decoded), so hits on any
// goroutine read it at once.
type decodedHit struct {
	e   cacheEntry
	hdr fasthttp.ResponseHeader
}

func inList(k []byte, names []string) bool {
	for _, n := range names {
		if asciiEqualFold(k, n) {
			return true
		}
	}
	return false
}
