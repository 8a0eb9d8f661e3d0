package engine

import (
	"bytes"
	"iter"
	"time"
)

// Cache-Control and the other header fields the cache reads (RFC 9111
// section 5, RFC 9110 sections 5.6 and 5.6.7). Nothing here allocates: the
// fields are parsed where fasthttp holds them.

// Cache-Control directive flags, for requests and responses.
const (
	ccNoStore = 1 << iota
	ccNoCache
	ccPrivate
	ccPublic
	ccMustRevalidate
	ccProxyRevalidate
	ccOnlyIfCached
	ccMustUnderstand
	ccMaxStaleAny // max-stale without a value: any staleness
	ccImmutable
)

// ccUnset marks a delta-seconds directive that is absent.
const ccUnset = -1

// deltaMax is what an overlong delta-seconds value means (RFC 9111 section
// 1.2.2: 2^31).
const deltaMax = 1 << 31

// cacheControl is the directives of one message's Cache-Control lines.
// Delta-seconds directives hold seconds, or ccUnset. A directive given twice
// keeps its first value (RFC 9111 section 4.2.1); a value that is not
// delta-seconds counts as 0, so a response that says "max-age=soon" is
// stale rather than fresh for ever.
type cacheControl struct {
	flags    uint32
	maxAge   int64
	sMaxAge  int64
	minFresh int64
	maxStale int64
	swr      int64 // stale-while-revalidate
	sie      int64 // stale-if-error
}

func (cc *cacheControl) has(f uint32) bool { return cc.flags&f != 0 }

// parseCacheControl reads every line of a Cache-Control field.
func parseCacheControl(lines [][]byte) cacheControl {
	cc := cacheControl{maxAge: ccUnset, sMaxAge: ccUnset, minFresh: ccUnset, maxStale: ccUnset, swr: ccUnset, sie: ccUnset}
	for _, line := range lines {
		for len(line) > 0 {
			var name, val []byte
			name, val, line = nextDirective(line)
			cc.set(name, val)
		}
	}
	return cc
}

func (cc *cacheControl) set(name, val []byte) {
	var d *int64
	switch {
	case asciiEqualFold(name, "max-age"):
		d = &cc.maxAge
	case asciiEqualFold(name, "s-maxage"):
		d = &cc.sMaxAge
	case asciiEqualFold(name, "min-fresh"):
		d = &cc.minFresh
	case asciiEqualFold(name, "max-stale"):
		if val == nil {
			cc.flags |= ccMaxStaleAny
			return
		}
		d = &cc.maxStale
	case asciiEqualFold(name, "stale-while-revalidate"):
		d = &cc.swr
	case asciiEqualFold(name, "stale-if-error"):
		d = &cc.sie
	case asciiEqualFold(name, "no-store"):
		cc.flags |= ccNoStore
	case asciiEqualFold(name, "no-cache"):
		// no-cache="field" (the named fields only) is taken as plain
		// no-cache: stricter, and allowed (RFC 9111 section 5.2.2.4).
		cc.flags |= ccNoCache
	case asciiEqualFold(name, "private"):
		cc.flags |= ccPrivate
	case asciiEqualFold(name, "public"):
		cc.flags |= ccPublic
	case asciiEqualFold(name, "must-revalidate"):
		cc.flags |= ccMustRevalidate
	case asciiEqualFold(name, "proxy-revalidate"):
		cc.flags |= ccProxyRevalidate
	case asciiEqualFold(name, "only-if-cached"):
		cc.flags |= ccOnlyIfCached
	case asciiEqualFold(name, "must-understand"):
		cc.flags |= ccMustUnderstand
	case asciiEqualFold(name, "immutable"):
		cc.flags |= ccImmutable
	}
	if d != nil && *d == ccUnset {
		*d = parseDelta(val)
	}
}

// nextDirective splits the first directive off a Cache-Control line:
// name, value (nil when there is no "="; unquoted) and the rest.
func nextDirective(s []byte) (name, val, rest []byte) {
	s = trimOWS(s)
	i := 0
	for i < len(s) && s[i] != ',' && s[i] != '=' {
		i++
	}
	name = trimOWS(s[:i])
	if i == len(s) || s[i] == ',' {
		if i < len(s) {
			i++
		}
		return name, nil, s[i:]
	}
	s = trimOWS(s[i+1:])
	if len(s) > 0 && s[0] == '"' {
		// quoted-string: up to the closing quote (a backslash escapes).
		j := 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		val = s[1:min(j, len(s))]
		s = s[min(j+1, len(s)):]
		if k := bytes.IndexByte(s, ','); k >= 0 {
			return name, val, s[k+1:]
		}
		return name, val, nil
	}
	j := bytes.IndexByte(s, ',')
	if j < 0 {
		return name, trimOWS(s), nil
	}
	return name, trimOWS(s[:j]), s[j+1:]
}

// parseDelta reads delta-seconds (RFC 9111 section 1.2.2): digits only;
// anything else is 0, an overlong value 2^31.
func parseDelta(v []byte) int64 {
	if len(v) == 0 {
		return 0
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		if n < deltaMax {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, deltaMax)
}

// parseAge reads an Age value: its first member when a list ("7200, 0"
// is 7200 s old); ok is false when that is not delta-seconds (such an Age
// is ignored).
func parseAge(v []byte) (int64, bool) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	v = trimOWS(v)
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	return parseDelta(v), true
}

func trimOWS(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseHTTPDate reads an HTTP-date (RFC 9110 section 5.6.7): IMF-fixdate,
// and the obsolete RFC 850 and asctime forms. ok is false for anything
// else, which callers treat as a time in the past where the RFC says so
// (an invalid Expires).
func parseHTTPDate(b []byte) (t time.Time, ok bool) {
	b = trimOWS(b)
	if t, ok := parseIMFFixdate(b); ok {
		return t, true
	}
	var buf [64]byte
	if len(b) > len(buf) {
		return time.Time{}, false
	}
	s := buf[:copy(buf[:], b)]
	for _, layout := range [...]string{"Monday, 02-Jan-06 15:04:05 GMT", "Mon Jan _2 15:04:05 2006"} {
		if t, err := time.Parse(layout, string(s)); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parseIMFFixdate reads "Sun, 06 Nov 1994 08:49:37 GMT" without allocating.
func parseIMFFixdate(b []byte) (time.Time, bool) {
	// Case is not checked: "AUG" and "gmt" are seen in the wild.
	if len(b) != 29 || b[3] != ',' || b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' ||
		b[19] != ':' || b[22] != ':' || b[25] != ' ' || !asciiEqualFold(b[26:], "GMT") {
		return time.Time{}, false
	}
	num := func(s []byte) int {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	day, year := num(b[5:7]), num(b[12:16])
	hh, mm, ss := num(b[17:19]), num(b[20:22]), num(b[23:25])
	mon := 0
	for i, m := range [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"} {
		if asciiEqualFold(b[8:11], m) {
			mon = i + 1
			break
		}
	}
	if day < 1 || day > 31 || year < 0 || mon == 0 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(mon), day, hh, mm, ss, 0, time.UTC), true
}

// appendHTTPDate appends t as an IMF-fixdate.
func appendHTTPDate(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, "Mon, 02 Jan 2006 15:04:05 GMT")
}

// listItems yields the items of a comma-separated field (all its lines),
// trimmed of whitespace, empty ones left out.
func listItems(lines [][]byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for _, line := range lines {
			for len(line) > 0 {
				var item []byte
				if i := bytes.IndexByte(line, ','); i >= 0 {
					item, line = line[:i], line[i+1:]
				} else {
					item, line = line, nil
				}
				if item = trimOWS(item); len(item) > 0 && !yield(item) {
					return
				}
			}
		}
	}
}

// hasListToken reports whether a comma-separated field (all its lines)
// lists tok, case-insensitively.
func hasListToken(lines [][]byte, tok string) bool {
	for item := range listItems(lines) {
		if asciiEqualFold(item, tok) {
			return true
		}
	}
	return false
}

// etagMatch reports whether an If-None-Match value (all its lines) matches
// etag by the weak comparison (RFC 9110 section 8.8.3.2), or is "*".
func etagMatch(lines [][]byte, etag []byte) bool {
	etag = trimOWS(etag)
	if len(etag) == 0 {
		for _, l := range lines {
			if bytes.Equal(trimOWS(l), []byte("*")) {
				return true
			}
		}
		return false
	}
	opaque := func(t []byte) []byte {
		if len(t) > 2 && t[0] == 'W' && t[1] == '/' {
			return t[2:]
		}
		return t
	}
	want := opaque(etag)
	for _, line := range lines {
		for len(line) > 0 {
			line = trimOWS(line)
			if len(line) > 0 && line[0] == ',' {
				line = line[1:]
				continue
			}
			if len(line) > 0 && line[0] == '*' {
				return true
			}
			// An entity-tag: [W/]"..." (commas may appear inside quotes).
			start := 0
			if len(line) > 2 && line[0] == 'W' && line[1] == '/' {
				start = 2
			}
			end := len(line)
			if start < len(line) && line[start] == '"' {
				if j := bytes.IndexByte(line[start+1:], '"'); j >= 0 {
					end = start + 1 + j + 1
				}
			} else if j := bytes.IndexByte(line, ','); j >= 0 {
				end = j
			}
			if bytes.Equal(opaque(trimOWS(line[:end])), want) {
				return true
			}
			line = line[end:]
		}
	}
	return false
}
