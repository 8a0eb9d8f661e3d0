package engine

import (
	"bytes"
	"slices"
	"time"

	"github.com/valyala/fasthttp"
)

// The RFC 9111 rules of vkp's shared cache: what may be stored, for how
// long, and when a stored response may answer a request. Everything here
// is a pure function of header values and times, so it is table-tested
// apart from the request flow (cache.go).

// Lifetimes and keeps.
const (
	// forceDefaultLifetime is a ForceCache response's lifetime when neither
	// CacheTime nor its headers give one (VKProxy's default).
	forceDefaultLifetime = 10 * time.Second
	// heuristicMax caps a heuristic lifetime (10% of the time since
	// Last-Modified, RFC 9111 section 4.2.2).
	heuristicMax = 24 * time.Hour
	// staleKeep is how long an entry stays in its store after it turned
	// stale, for requests that accept stale answers (max-stale) and for
	// stale-if-error; entryKeep with validators, to be revalidated with a
	// conditional request rather than fetched again.
	staleKeep     = time.Minute
	validatorKeep = time.Hour
	maxStoreTTL   = 365 * 24 * time.Hour
)

// respInfo is what the cache reads from a response's header.
type respInfo struct {
	status       int
	cc           cacheControl
	date         time.Time
	hasDate      bool
	expires      []byte // first Expires line; nil: none
	expiresN     int
	lastModified []byte
	etag         []byte
	age          int64
	hasAge       bool
	setCookie    bool
	varyStar     bool
	vary         []byte // lower-cased sorted names, comma-separated
}

// fieldGetter returns every line of a header field.
type fieldGetter func(dst [][]byte, name string) [][]byte

func responseFields(h *fasthttp.ResponseHeader) fieldGetter {
	return func(dst [][]byte, name string) [][]byte {
		if name == "Set-Cookie" {
			// PeekAll would join the cookies into a new slice.
			for k, v := range h.All() {
				if asciiEqualFold(k, name) {
					dst = append(dst, v)
				}
			}
			return dst
		}
		return append(dst, h.PeekAll(name)...)
	}
}

func entryFields(e *cacheEntry) fieldGetter { return e.fieldLines }

// readRespInfo reads the fields the cache needs; the slices point into the
// header (valid while it is).
func readRespInfo(status int, get fieldGetter) respInfo {
	var lines [8][]byte
	ri := respInfo{status: status}
	cdn := get(lines[:0], "CDN-Cache-Control")
	targeted := false
	for _, l := range cdn {
		targeted = targeted || len(trimOWS(l)) > 0
	}
	targeted = targeted && validTargeted(cdn)
	if targeted {
		// RFC 9213: vkp is a CDN-like shared cache; a CDN-Cache-Control
		// replaces Cache-Control and Expires for it.
		ri.cc = parseCacheControl(cdn)
	} else {
		ri.cc = parseCacheControl(get(lines[:0], "Cache-Control"))
	}
	if l := get(lines[:0], "Date"); len(l) > 0 {
		ri.date, ri.hasDate = parseHTTPDate(l[0])
	}
	if l := get(lines[:0], "Expires"); len(l) > 0 && !targeted {
		ri.expires, ri.expiresN = l[0], len(l)
	}
	if l := get(lines[:0], "Last-Modified"); len(l) > 0 {
		ri.lastModified = l[0]
	}
	if l := get(lines[:0], "ETag"); len(l) > 0 {
		ri.etag = l[0]
	}
	if l := get(lines[:0], "Age"); len(l) > 0 {
		ri.age, ri.hasAge = parseAge(l[0])
	}
	ri.setCookie = len(get(lines[:0], "Set-Cookie")) > 0
	ri.vary, ri.varyStar = varyNames(get(lines[:0], "Vary"))
	return ri
}

// validTargeted reports whether a targeted cache-control field is a valid
// Structured Field dictionary (RFC 8941) whose delta-seconds directives are
// integers: RFC 9213 has an invalid one ignored, Cache-Control then applies.
func validTargeted(lines [][]byte) bool {
	for _, line := range lines {
		for len(line) > 0 {
			line = trimOWS(line)
			// key
			i := 0
			for i < len(line) && (line[i] >= 'a' && line[i] <= 'z' || line[i] == '*' ||
				i > 0 && (line[i] >= '0' && line[i] <= '9' || line[i] == '_' || line[i] == '-' || line[i] == '.')) {
				i++
			}
			if i == 0 {
				return false
			}
			key := line[:i]
			line = line[i:]
			if len(line) > 0 && line[0] == '=' {
				n, kind := sfItem(line[1:])
				if n == 0 {
					return false
				}
				switch string(key) {
				case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
					if kind != sfInteger {
						return false
					}
				}
				line = line[1+n:]
			}
			// parameters: ;key[=item]
			for len(line) > 0 && line[0] == ';' {
				line = trimOWS(line[1:])
				j := 0
				for j < len(line) && (line[j] >= 'a' && line[j] <= 'z' || line[j] == '*' || j > 0 && (line[j] >= '0' && line[j] <= '9' || line[j] == '_' || line[j] == '-' || line[j] == '.')) {
					j++
				}
				if j == 0 {
					return false
				}
				line = line[j:]
				if len(line) > 0 && line[0] == '=' {
					n, _ := sfItem(line[1:])
					if n == 0 {
						return false
					}
					line = line[1+n:]
				}
			}
			line = trimOWS(line)
			if len(line) == 0 {
				break
			}
			if line[0] != ',' {
				return false
			}
			line = line[1:]
			if len(trimOWS(line)) == 0 {
				return false // a trailing comma
			}
		}
	}
	return true
}

// Structured Field bare item types sfItem tells apart.
const (
	sfInteger = iota + 1
	sfOther
)

// sfItem returns the length of the bare item at the start of b (0: none)
// and whether it is an integer.
func sfItem(b []byte) (int, int) {
	if len(b) == 0 {
		return 0, 0
	}
	switch c := b[0]; {
	case c == '-' || c >= '0' && c <= '9':
		i := 0
		if c == '-' {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start || i-start > 15 {
			return 0, 0
		}
		if i < len(b) && b[i] == '.' {
			j := i + 1
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == i+1 || j-i-1 > 3 || i-start > 12 {
				return 0, 0
			}
			return j, sfOther
		}
		return i, sfInteger
	case c == '"':
		for i := 1; i < len(b); i++ {
			switch b[i] {
			case '\\':
				if i+1 >= len(b) || b[i+1] != '"' && b[i+1] != '\\' {
					return 0, 0
				}
				i++
			case '"':
				return i + 1, sfOther
			default:
				if b[i] < 0x20 || b[i] > 0x7e {
					return 0, 0
				}
			}
		}
		return 0, 0
	case c == '?':
		if len(b) >= 2 && (b[1] == '0' || b[1] == '1') {
			return 2, sfOther
		}
		return 0, 0
	case c == ':':
		for i := 1; i < len(b); i++ {
			if b[i] == ':' {
				return i + 1, sfOther
			}
		}
		return 0, 0
	case c == '*' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		i := 1
		for i < len(b) && (isTokenByte(b[i]) || b[i] == ':' || b[i] == '/') {
			i++
		}
		return i, sfOther
	}
	return 0, 0
}

func isTokenByte(c byte) bool {
	return c > 0x20 && c < 0x7f && !bytes.ContainsRune([]byte(`"(),/:;<=>?@[\]{}`), rune(c))
}

// varyNames returns a Vary field's names, lower-cased, sorted, without
// duplicates, comma-separated; star reports "*".
func varyNames(lines [][]byte) (names []byte, star bool) {
	var list [][]byte
	for item := range listItems(lines) {
		if len(item) == 1 && item[0] == '*' {
			return nil, true
		}
		list = append(list, bytes.ToLower(item))
	}
	if len(list) == 0 {
		return nil, false
	}
	slices.SortFunc(list, bytes.Compare)
	list = slices.CompactFunc(list, bytes.Equal)
	return bytes.Join(list, []byte{','}), false
}

// heuristicStatus reports the status codes RFC 9110 section 15.1 defines
// as heuristically cacheable (206 is left out: vkp stores whole responses
// only).
func heuristicStatus(s int) bool {
	switch s {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// storePolicy is a route's settings for storing responses.
type storePolicy struct {
	force     bool          // ForceCache
	cacheTime time.Duration // CacheTime; 0: from the headers
}

// assess decides whether a response may be stored (RFC 9111 section 3 for a
// shared cache, plus the seeds' rules) and computes its entry's meta.
// reqTime and respTime are when the request went upstream and when the
// response arrived (unix ns). A response that may not be stored gets the
// reason as a Cache-Status detail.
func (p *storePolicy) assess(ri *respInfo, reqCC *cacheControl, reqAuth bool, reqTime, respTime int64) (m entryMeta, detail string) {
	cc := &ri.cc
	switch {
	case ri.status < 200 || ri.status > 999:
		return m, "status"
	case ri.status == 206:
		return m, "partial-content"
	case ri.status == 304:
		return m, "not-modified"
	case reqCC.has(ccNoStore):
		return m, "request-no-store"
	case ri.setCookie:
		return m, "set-cookie" // never shared, ForceCache or not
	case ri.varyStar:
		return m, "vary-star"
	}
	if p.force {
		if ri.status != 200 {
			return m, "status"
		}
	} else {
		// no-store is ignored when must-understand is present and the
		// status is one vkp understands (RFC 9111 section 5.2.2.3).
		if cc.has(ccNoStore) && !(cc.has(ccMustUnderstand) && understood(ri.status)) {
			return m, "no-store"
		}
		if cc.has(ccMustUnderstand) && !understood(ri.status) {
			return m, "status"
		}
		if cc.has(ccPrivate) {
			return m, "private"
		}
	}
	// ForceCache or not: an answer to a request with Authorization is one
	// user's unless the origin says it may be shared (RFC 9111 section 3.5).
	if reqAuth && !cc.has(ccPublic) && cc.sMaxAge == ccUnset && !cc.has(ccMustRevalidate) {
		return m, "authorization"
	}
	m.stored = respTime
	m.age = initialAge(ri, reqTime, respTime)
	if cc.has(ccMustRevalidate|ccProxyRevalidate) || cc.sMaxAge != ccUnset {
		m.flags |= entMustRevalidate
	}
	if cc.has(ccNoCache) && !p.force {
		m.flags |= entNoCache
	}
	if len(ri.etag) > 0 || len(ri.lastModified) > 0 {
		m.flags |= entValidators
	}
	if cc.has(ccImmutable) {
		m.flags |= entImmutable
	}
	if cc.swr != ccUnset {
		m.swr = time.Duration(cc.swr) * time.Second
	}
	if cc.sie != ccUnset {
		m.sie = time.Duration(cc.sie) * time.Second
	}
	life, explicit := ri.lifetime(respTime)
	switch {
	case p.cacheTime > 0:
		if !explicit && !p.force && !heuristicStatus(ri.status) && !cc.has(ccPublic) {
			return m, "no-freshness"
		}
		life = p.cacheTime
		m.age = 0 // the route's own lifetime runs from now
	case explicit:
	case p.force:
		life = forceDefaultLifetime
	case heuristicStatus(ri.status) || cc.has(ccPublic):
		life = ri.heuristic()
	default:
		return m, "no-freshness"
	}
	m.lifetime = min(life, deltaMax*time.Second) // "Expires: 2286": 68 years will do
	if !explicit && life == 0 && m.flags&entValidators == 0 && p.cacheTime == 0 {
		return m, "no-freshness"
	}
	if life <= m.age && m.flags&entValidators == 0 && m.swr == 0 && m.sie == 0 {
		// Stale on arrival and nothing to revalidate it with: useless.
		return m, "stale"
	}
	if m.flags&entNoCache != 0 && m.flags&entValidators == 0 {
		return m, "no-cache"
	}
	return m, ""
}

// understood reports the status codes vkp knows the semantics of.
func understood(s int) bool {
	return s >= 200 && s <= 208 || s == 226 || s >= 300 && s <= 308 || s >= 400 && s <= 418 ||
		s >= 421 && s <= 426 || s == 428 || s == 429 || s == 431 || s == 451 || s >= 500 && s <= 508 || s == 510 || s == 511
}

// initialAge is the corrected initial age (RFC 9111 section 4.2.3), in
// whole seconds as Date and Age are: a response that arrives in the second
// of its Date is 0 s old, not the fraction of the second already gone.
func initialAge(ri *respInfo, reqTime, respTime int64) time.Duration {
	var apparent, corrected time.Duration
	if ri.hasDate {
		apparent = max(time.Duration(respTime/1e9-ri.date.Unix())*time.Second, 0)
	}
	if ri.hasAge {
		corrected = time.Duration(ri.age) * time.Second
	}
	corrected += time.Duration(max(respTime-reqTime, 0)) / time.Second * time.Second
	return max(apparent, corrected)
}

// lifetime is the freshness lifetime the response states (RFC 9111 section
// 4.2.1): s-maxage, max-age, or Expires - Date. An invalid Expires, or more
// than one, means already expired.
func (ri *respInfo) lifetime(respTime int64) (time.Duration, bool) {
	cc := &ri.cc
	switch {
	case cc.sMaxAge != ccUnset:
		return time.Duration(cc.sMaxAge) * time.Second, true
	case cc.maxAge != ccUnset:
		return time.Duration(cc.maxAge) * time.Second, true
	case ri.expires != nil:
		exp, ok := parseHTTPDate(ri.expires)
		if !ok || ri.expiresN > 1 {
			return 0, true
		}
		date := time.Unix(respTime/1e9, 0)
		if ri.hasDate {
			date = ri.date
		}
		return max(exp.Sub(date), 0), true
	}
	return 0, false
}

// heuristic is 10% of the time since Last-Modified, up to heuristicMax.
func (ri *respInfo) heuristic() time.Duration {
	if ri.lastModified == nil || !ri.hasDate {
		return 0
	}
	lm, ok := parseHTTPDate(ri.lastModified)
	if !ok || !lm.Before(ri.date) {
		return 0
	}
	return min(ri.date.Sub(lm)/10/time.Second*time.Second, heuristicMax)
}

// storeTTL is how long a store keeps an entry: while it is fresh, then
// while it can still serve (stale-while-revalidate, stale-if-error,
// max-stale requests) or be revalidated.
func storeTTL(m *entryMeta) time.Duration {
	keep := max(m.swr, m.sie, staleKeep)
	if m.flags&entValidators != 0 {
		keep = max(keep, validatorKeep)
	}
	return min(max(m.lifetime-m.age, 0)+keep, maxStoreTTL)
}

// use is how a stored response may answer a request.
type use uint8

const (
	useNone  use = iota // must be validated (or fetched) first
	useFresh            // fresh, and acceptable to the request
	useStale            // stale, but the request accepts it (max-stale)
	useSWR              // stale within stale-while-revalidate: served, refreshed in the background
)

// usable decides how an entry of the given age may answer a request with
// the directives rq (RFC 9111 sections 4.2, 5.2.1 and 4.2.4;
// stale-while-revalidate from RFC 5861).
func usable(e *cacheEntry, rq *cacheControl, age time.Duration) use {
	if e.flags&entNoCache != 0 || rq.has(ccNoCache) {
		return useNone
	}
	if rq.maxAge != ccUnset && age > time.Duration(rq.maxAge)*time.Second {
		return useNone
	}
	if rq.minFresh != ccUnset && e.lifetime-age < time.Duration(rq.minFresh)*time.Second {
		return useNone
	}
	if age < e.lifetime {
		return useFresh
	}
	if e.flags&entMustRevalidate != 0 {
		return useNone
	}
	stale := age - e.lifetime
	if rq.has(ccMaxStaleAny) || rq.maxStale != ccUnset && stale <= time.Duration(rq.maxStale)*time.Second {
		return useStale
	}
	if stale < e.swr && rq.maxAge == ccUnset {
		return useSWR
	}
	return useNone
}

// staleOnError reports whether a stale entry may answer when revalidating
// it failed (stale-if-error from the response, or from the request): only
// an entry that is stale, by less than the window. A fresh entry that had
// to be validated (a no-cache answer, a request with no-cache or max-age)
// is not served in place of the error, nor is one whose answer forbids
// stale use (RFC 9111 section 4.2.4: no-cache, must-revalidate,
// proxy-revalidate, s-maxage).
func staleOnError(e *cacheEntry, rq *cacheControl, age time.Duration) bool {
	if e.flags&(entMustRevalidate|entNoCache) != 0 {
		return false
	}
	window := e.sie
	if rq.sie != ccUnset {
		window = max(window, time.Duration(rq.sie)*time.Second)
	}
	stale := age - e.lifetime
	return stale >= 0 && stale < window
}

// notModified reports whether a client's conditional GET or HEAD is
// answered 304 by an entry (RFC 9110 section 13.2.2: If-None-Match first,
// If-Modified-Since only without it). Only a 2xx entry can be: the
// conditions apply when the answer would be 2xx (section 13.2.1), and a
// cached 404 or 301 must not become a 304 for a copy the client has.
func notModified(h *fasthttp.RequestHeader, e *cacheEntry) bool {
	if e.status < 200 || e.status > 299 {
		return false
	}
	var lines [4][]byte
	inm := append(lines[:0], h.PeekAll("If-None-Match")...)
	if len(inm) > 0 {
		return etagMatch(inm, e.field("ETag"))
	}
	ims := h.Peek("If-Modified-Since")
	if len(ims) == 0 {
		return false
	}
	since, ok := parseHTTPDate(ims)
	if !ok {
		return false
	}
	lm := e.field("Last-Modified")
	if lm == nil {
		lm = e.field("Date")
	}
	t, ok := parseHTTPDate(lm)
	return ok && !t.After(since)
}

// notModifiedFields are the header fields a 304 from the cache carries
// (RFC 9110 section 15.4.5).
var notModifiedFields = []string{"Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Vary", "Last-Modified"}

// appendVaryValues appends a request's values of the fields names lists
// (varyNames' form), normalized: each field's lines joined, list items
// trimmed; an absent field is told apart from an empty one. Each value
// follows its field's name: "name\x01\x00" (absent) or
// "name\x02value\x00". A name is a token and a value holds no NUL, so the
// string reads one way only, and two answers that vary on different
// fields never share a variant key (the value "gzip" of Origin is not that
// of Accept-Encoding). host is the client's Host (the request's own may
// have been rewritten for the upstream by then).
func appendVaryValues(dst []byte, names []byte, h *fasthttp.RequestHeader, host []byte) []byte {
	for len(names) > 0 {
		var name []byte
		if i := bytes.IndexByte(names, ','); i >= 0 {
			name, names = names[:i], names[i+1:]
		} else {
			name, names = names, nil
		}
		dst = append(dst, name...)
		var lines [][]byte
		if string(name) == "host" {
			if host != nil {
				lines = [][]byte{host}
			}
		} else {
			lines = h.PeekAll(b2s(name))
		}
		if len(lines) == 0 {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 2)
			first := true
			for _, l := range lines {
				for len(l) > 0 {
					var item []byte
					if i := bytes.IndexByte(l, ','); i >= 0 {
						item, l = l[:i], l[i+1:]
					} else {
						item, l = l, nil
					}
					if !first {
						dst = append(dst, ',')
					}
					first = false
					dst = append(dst, trimOWS(item)...)
				}
			}
		}
		dst = append(dst, 0)
	}
	return dst
}
