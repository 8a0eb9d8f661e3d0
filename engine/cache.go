package engine

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/engine/expr"
	"github.com/vkp-proxy/vkp/pool"
	"github.com/vkp-proxy/vkp/store"
)

// The response cache: a shared cache (RFC 9111) in front of a route's
// cluster, on one of the stores (store/). A route uses it when its
// Metadata has Cache (the store: Memory, Disk or Redis) or CacheKey.
//
// Per request (GET and HEAD; other methods pass, and unsafe ones
// invalidate what they change):
//
//  1. the gate: CacheWhen, or by default any request without
//     Authorization; a request the gate refuses passes untouched;
//  2. the key: "routeId#" + the CacheKey rendering (its {Path} is the
//     path as forwarded; controls and '%' percent-encoded: escapeKey), or
//     by default "routeId#GET " + host + path + query (HEAD uses GET's
//     entries; it never stores, having no body);
//  3. lookup: the key holds a response, or, for a response that had
//     Vary, a variant index naming the fields it varies on: the variant's
//     key adds a NUL and the request's values of those fields, each after
//     its name (appendVaryValues). No primary key holds a NUL, so none is
//     another's variant key;
//  4. a usable entry (fresh, or stale as the request or
//     stale-while-revalidate allows) answers, with Age and Cache-Status;
//     a client's conditional request is answered 304 from it;
//  5. otherwise the request goes upstream, conditional when the stale
//     entry has validators; concurrent misses on one key make one upstream
//     request (cache_fill.go); the response is stored when RFC 9111 and
//     the route allow, once its whole body has arrived.
//
// Store errors (Redis down or slow) count as misses: the request goes to
// the origin and the client never sees them.

// cacheStage is the cache's place in a route's pipeline (pipeline.go).
var cacheStage = stage{
	name:  "cache",
	keys:  []string{"Cache", "CacheKey", "CacheWhen", "CacheMaximumBodySize", "ForceCache", "CacheTime"},
	build: buildCache,
}

// DefaultCacheMaxBody is the largest body stored when the route does not
// set CacheMaximumBodySize (the seeds' default, 64 MiB).
const DefaultCacheMaxBody = 64 << 20

// routeCache is a route's compiled cache settings.
type routeCache struct {
	prefix  []byte // "routeId#"
	kind    string // store kind: memory, disk, redis
	st      store.Store
	share   *sharedHits // hits share the store's copies (nil: Redis)
	async   bool        // writes go through the engine's store writer (disk, redis)
	tmpl    *expr.Template
	when    func(*fasthttp.RequestCtx) bool
	maxBody int
	policy  storePolicy
	timeout time.Duration // the route's: how long a collapsed request waits
	stats   routeCacheStats
}

func buildCache(c *compiler, r *Route, next handler) handler {
	rc := c.compileCache(r)
	if rc == nil {
		return next
	}
	return func(x *exchange) { rc.serve(x, next) }
}

// compileCache reads a route's cache Metadata (nil: not cached, or a
// problem, reported with the key's JSON path).
func (c *compiler) compileCache(r *Route) *routeCache {
	kind, hasKind := r.meta("Cache")
	tmplSrc, hasKey := r.meta("CacheKey")
	if !hasKind && !hasKey {
		for _, k := range []string{"CacheWhen", "CacheMaximumBodySize", "ForceCache", "CacheTime"} {
			if _, ok := r.meta(k); ok {
				c.warnf(r.metaPath(k), "has no effect: the route has no Cache or CacheKey, so it is not cached")
			}
		}
		return nil
	}
	nerr := len(c.errs)
	rc := &routeCache{prefix: []byte(r.ID + "#"), maxBody: DefaultCacheMaxBody, timeout: r.timeout, stats: c.metrics.cacheStats(r.ID)}
	switch k := strings.ToLower(strings.TrimSpace(kind)); k {
	case "", "memory":
		rc.kind = "memory"
	case "disk", "redis":
		rc.kind = k
	default:
		c.errorf(r.metaPath("Cache"), "%q is not a cache store: want Memory, Disk or Redis", kind)
	}
	if hasKey {
		t, err := expr.CompileTemplate(tmplSrc)
		if err != nil {
			c.errorf(r.metaPath("CacheKey"), "%v", err)
		}
		rc.tmpl = t
	}
	if v, ok := r.meta("CacheWhen"); ok {
		p, err := expr.Compile(v)
		if err != nil {
			c.errorf(r.metaPath("CacheWhen"), "%v", err)
		} else {
			rc.when = p.Eval
			c.snap.readsBody = c.snap.readsBody || p.ReadsBody()
		}
	}
	if v, ok := r.meta("CacheMaximumBodySize"); ok {
		n, err := ParseSize(v)
		switch {
		case err != nil:
			c.errorf(r.metaPath("CacheMaximumBodySize"), "%v", err)
		case n <= 0:
			c.errorf(r.metaPath("CacheMaximumBodySize"), "%q: must be more than 0", v)
		}
		rc.maxBody = n
	}
	if v, ok := r.meta("ForceCache"); ok {
		b, err := metaBool(v)
		if err != nil {
			c.errorf(r.metaPath("ForceCache"), "%v", err)
		}
		rc.policy.force = b
	}
	if v, ok := r.meta("CacheTime"); ok {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			c.errorf(r.metaPath("CacheTime"), "%q: want a positive duration like \"00:05:00\" or \"5m\"", v)
		}
		rc.policy.cacheTime = d
	}
	if len(c.errs) > nerr {
		return nil
	}
	if c.reg.stores != nil { // a real build, not a dry run
		st, err := c.reg.stores.open(rc.kind)
		if err != nil {
			c.errorf(r.metaPath("Cache"), "%v", err)
			return nil
		}
		rc.st = st
		rc.async = rc.kind != "memory"
		rc.share = c.reg.stores.sharing(rc.kind)
	}
	return rc
}

// metaBool reads a Metadata boolean: true/false, or a number (0 is
// false), as VKProxy configs write them.
func metaBool(v string) (bool, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return n != 0, nil
	}
	return false, errors.New(`want true or false`)
}

// serve is the cache stage's handler.
func (rc *routeCache) serve(x *exchange, next handler) {
	ctx := x.ctx
	h := &ctx.Request.Header
	if rc.st == nil {
		next(x)
		return
	}
	if !h.IsGet() && !h.IsHead() {
		if safeMethod(h.Method()) {
			next(x)
			return
		}
		rc.invalidating(x, next)
		return
	}
	if rc.when != nil && !rc.when(ctx) || rc.when == nil && len(h.Peek("Authorization")) > 0 {
		rc.stats.bypass.Inc()
		next(x)
		addCacheStatus(&ctx.Response.Header, "fwd=bypass", "", 0)
		return
	}
	rq := requestDirectives(h)
	kb := pool.Scratch.Get()
	defer pool.Scratch.Put(kb)
	kb.B = rc.appendKey(kb.B[:0], ctx, h.IsHead())
	if len(kb.B) == len(rc.prefix) {
		// The CacheKey rendered nothing: the request is not cached
		// (VKProxy does the same).
		rc.stats.bypass.Inc()
		next(x)
		addCacheStatus(&ctx.Response.Header, "fwd=bypass", "", 0)
		return
	}
	now := x.e.cacheNow(ctx)
	pk := len(kb.B)
	ent, raw, lk := rc.lookup(ctx, kb, now)
	if raw != nil {
		age := ent.currentAge(now)
		served, swr := false, false
		switch usable(&ent, &rq, age) {
		case useFresh:
			served = rc.answer(x, &ent, age, "hit", "")
		case useStale:
			served = rc.answer(x, &ent, age, "hit", "stale")
		case useSWR:
			served = rc.answer(x, &ent, age, "hit", "stale-while-revalidate")
			swr = served
		}
		rc.publish(kb.B, raw, &ent) // before the entry is copied anywhere
		if swr {
			rc.refreshInBackground(x, next, kb.B, pk, &ent, raw)
		}
		if served {
			rc.stats.hit.Inc()
			rc.stats.hitBytes.Add(len(ent.body))
			return
		}
	}
	rc.stats.miss.Inc()
	fwd := "uri-miss"
	switch {
	case rq.has(ccNoCache):
		fwd = "request"
	case raw != nil:
		fwd = "stale"
	case lk == lookupVaryMiss:
		fwd = "vary-miss"
	}
	if rq.has(ccOnlyIfCached) {
		// RFC 9111 section 5.2.1.7: 504, and nothing goes upstream.
		resp := &ctx.Response
		resp.Reset()
		resp.SetStatusCode(fasthttp.StatusGatewayTimeout)
		resp.Header.SetContentType("text/plain; charset=utf-8")
		resp.SetBodyRaw(errorBodies[fasthttp.StatusGatewayTimeout])
		addCacheStatus(&resp.Header, "fwd=miss", "only-if-cached", 0)
		return
	}
	if h.IsHead() {
		next(x)
		addCacheStatus(&ctx.Response.Header, "fwd="+fwd, "", 0)
		return
	}
	f := &fetch{rc: rc, x: x, fwd: fwd, pk: pk, rq: rq}
	if raw != nil {
		f.stale, f.staleRaw = ent, raw
	}
	fl, role := x.e.fills.join(kb.B, now)
	switch role {
	case fillWaiter:
		if rc.collapsed(x, fl, fwd) {
			return
		}
		fl = nil // not shareable: this request fetches its own answer
	case fillPass:
		fl = nil
	}
	f.fl = fl
	f.key = append(f.keyBuf[:0], kb.B...)
	f.run(next)
}

// safeMethod reports the methods that change nothing (RFC 9110 section
// 9.2.1); a response to any other invalidates (RFC 9111 section 4.4).
func safeMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// requestDirectives reads a request's Cache-Control, and Pragma: no-cache
// when there is no Cache-Control (RFC 9111 section 5.4).
func requestDirectives(h *fasthttp.RequestHeader) cacheControl {
	lines := h.PeekAll("Cache-Control")
	if len(lines) > 0 {
		return parseCacheControl(lines)
	}
	rq := parseCacheControl(nil)
	if hasListToken(h.PeekAll("Pragma"), "no-cache") {
		rq.flags |= ccNoCache
	}
	return rq
}

// appendKey appends the request's cache key; asGET renders it as for GET
// (HEAD requests, and invalidations, use GET's entries).
func (rc *routeCache) appendKey(dst []byte, ctx *fasthttp.RequestCtx, asGET bool) []byte {
	dst = append(dst, rc.prefix...)
	h := &ctx.Request.Header
	if rc.tmpl == nil {
		dst = append(dst, "GET "...)
		n := len(dst)
		dst = append(dst, h.Host()...)
		lowerASCII(dst[n:])
		return appendOriginForm(dst, &ctx.Request)
	}
	n := len(dst)
	if !asGET || h.IsGet() {
		return escapeKey(rc.tmpl.AppendTo(dst, ctx), n)
	}
	var mb [16]byte
	m := append(mb[:0], h.Method()...)
	h.SetMethod(fasthttp.MethodGet)
	dst = rc.tmpl.AppendTo(dst, ctx)
	h.SetMethodBytes(m)
	return escapeKey(dst, n)
}

// escapeKey percent-encodes, in dst[from:], the bytes a primary key must
// not hold: controls (NUL ends a primary key where a variant's Vary part
// begins) and '%' itself, so that the encoding is one-to-one. A template
// renders decoded text ({Query('x')}, a header), which could otherwise
// make one request's primary key another URI's variant key. The default
// key needs none of it: fasthttp refuses controls in the request-target
// and NUL in Host. Keys without such bytes, the usual ones, are left as
// they are.
func escapeKey(dst []byte, from int) []byte {
	i := from
	for i < len(dst) && !keyEscaped(dst[i]) {
		i++
	}
	if i == len(dst) {
		return dst
	}
	sb := pool.Scratch.Get()
	sb.B = append(sb.B[:0], dst[i:]...)
	dst = dst[:i]
	const hex = "0123456789ABCDEF"
	for _, c := range sb.B {
		if keyEscaped(c) {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	pool.Scratch.Put(sb)
	return dst
}

func keyEscaped(c byte) bool { return c < 0x20 || c == 0x7f || c == '%' }

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// lookup results besides a hit.
const (
	lookupMiss = iota
	lookupVaryMiss
)

// lookup reads the entry for the key in kb; for a variant index it
// extends kb with the request's Vary values and reads the variant. raw is
// nil on a miss (or a store error, or a malformed entry).
func (rc *routeCache) lookup(ctx *fasthttp.RequestCtx, kb *pool.Buffer, now int64) (e cacheEntry, raw []byte, kind int) {
	raw, e, err := rc.get(kb.B, now)
	if err != nil {
		return e, nil, lookupMiss
	}
	if e.kind == entryIndex {
		kb.B = append(kb.B, 0)
		kb.B = appendVaryValues(kb.B, e.names, &ctx.Request.Header, ctx.Request.Header.Host())
		raw, e, err = rc.get(kb.B, now)
		if err != nil || e.kind != entryResponse {
			return e, nil, lookupVaryMiss
		}
	}
	return e, raw, lookupMiss
}

// get reads and decodes key's entry at now (unix ns): a copy hits share
// (see sharedHits), or the store's. A malformed entry is an error. A hot
// copy's response not decoded yet comes with e.capture set (publish).
func (rc *routeCache) get(key []byte, now int64) (raw []byte, e cacheEntry, err error) {
	raw, d, hot := rc.share.get(key, now)
	if d != nil {
		return raw, d.e, nil
	}
	if raw == nil {
		epoch := rc.share.now()
		if raw, err = rc.st.Get(context.Background(), key); err != nil {
			return nil, e, err
		}
		rc.share.add(key, raw, epoch, now)
	}
	if e, err = decodeEntry(raw); err != nil {
		return nil, e, err
	}
	if hot {
		if e.kind == entryIndex {
			rc.share.decoded(key, raw, &decodedHit{e: e})
		} else {
			e.capture = true
		}
	}
	return raw, e, nil
}

// publish keeps, for the next hits of the hot copy raw of key, the entry
// decoded and the header a full answer from it parsed (writeTo).
func (rc *routeCache) publish(key, raw []byte, e *cacheEntry) {
	if e.pend != nil {
		rc.share.decoded(key, raw, e.pend)
	}
	e.pend, e.capture = nil, false
}

// answer serves an entry: the whole response, or 304 when the client's
// conditional request matches it. hit is "hit" or "fwd=..." for the
// Cache-Status; detail says more ("stale"). It reports false when the
// entry's header block does not parse (the response is then empty, for the
// caller to fill).
func (rc *routeCache) answer(x *exchange, e *cacheEntry, age time.Duration, hit, detail string) bool {
	resp := &x.ctx.Response
	rh := &x.ctx.Request.Header
	var err error
	if notModified(rh, e) {
		err = e.writeTo(resp, notModifiedFields)
	} else if err = e.writeTo(resp, nil); err == nil && e.status == fasthttp.StatusOK {
		if r := rh.Peek("Range"); len(r) > 0 && ifRange(rh.Peek("If-Range"), e) {
			serveRange(resp, r, e.body)
		}
	}
	if err != nil {
		resp.Header.SetStatusCode(fasthttp.StatusOK)
		return false
	}
	var ab [20]byte
	resp.Header.SetBytesV("Age", strconv.AppendInt(ab[:0], int64(age/time.Second), 10))
	ttl := int64((e.lifetime - age) / time.Second)
	if e.lifetime-age < 0 && (e.lifetime-age)%time.Second != 0 {
		ttl-- // floor
	}
	addCacheStatus(&resp.Header, hit, detail, ttl)
	return true
}

// ifRange reports whether a Range request's If-Range (if any) lets the
// range be served from the entry: a strong ETag equal to the entry's, or
// the entry's Last-Modified exactly (RFC 9110 section 13.1.5).
func ifRange(v []byte, e *cacheEntry) bool {
	v = trimOWS(v)
	switch {
	case len(v) == 0:
		return true
	case v[0] == '"':
		et := e.field("ETag")
		return len(et) > 0 && et[0] == '"' && bytes.Equal(v, et)
	}
	lm := e.field("Last-Modified")
	return len(lm) > 0 && bytes.Equal(v, trimOWS(lm))
}

// serveRange turns a whole 200 answer into the 206 of a single byte range
// ("bytes=0-99", "bytes=100-", "bytes=-100"), or 416 when the range starts
// past the end. Several ranges, or a Range it does not read, leave the
// whole answer, which a server may always send.
func serveRange(resp *fasthttp.Response, spec, body []byte) {
	spec = trimOWS(spec)
	if len(spec) < 7 || !asciiEqualFold(spec[:6], "bytes=") || bytes.IndexByte(spec, ',') >= 0 {
		return
	}
	first, last, ok := bytes.Cut(trimOWS(spec[6:]), []byte("-"))
	if !ok {
		return
	}
	size := int64(len(body))
	num := func(b []byte) (int64, bool) {
		b = trimOWS(b)
		if len(b) == 0 || len(b) > 18 {
			return 0, false
		}
		var n int64
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		}
		return n, true
	}
	var start, end int64
	switch a, okA := num(first); {
	case len(trimOWS(first)) == 0: // a suffix: the last N bytes
		n, ok := num(last)
		if !ok || n == 0 {
			return
		}
		start, end = max(size-n, 0), size-1
	case !okA:
		return
	default:
		start, end = a, size-1
		if len(trimOWS(last)) > 0 {
			b, ok := num(last)
			if !ok || b < a {
				return
			}
			end = min(b, size-1)
		}
	}
	var cr [64]byte
	v := append(cr[:0], "bytes "...)
	if start >= size {
		v = strconv.AppendInt(append(v, "*/"...), size, 10)
		resp.SetStatusCode(fasthttp.StatusRequestedRangeNotSatisfiable)
		resp.Header.SetBytesV("Content-Range", v)
		resp.SetBodyRaw(nil)
		return
	}
	v = strconv.AppendInt(v, start, 10)
	v = strconv.AppendInt(append(v, '-'), end, 10)
	v = strconv.AppendInt(append(v, '/'), size, 10)
	resp.SetStatusCode(fasthttp.StatusPartialContent)
	resp.Header.SetBytesV("Content-Range", v)
	resp.SetBodyRaw(body[start : end+1])
}

// answerOrFail answers with an entry after an upstream exchange, or with
// a 502 if the entry cannot be served.
func (rc *routeCache) answerOrFail(x *exchange, e *cacheEntry, age time.Duration, hit, detail string) {
	if !rc.answer(x, e, age, hit, detail) {
		x.e.fail(x, errBadEntry, nil)
	}
}

// addCacheStatus adds vkp's member to the Cache-Status field (RFC 9211):
// "vkp; hit; ttl=N", "vkp; fwd=uri-miss; stored", "vkp; fwd=bypass", ...
// An upstream cache's members stay before it.
func addCacheStatus(h *fasthttp.ResponseHeader, params, detail string, ttl int64) {
	var b [128]byte
	s := append(b[:0], "vkp; "...)
	s = append(s, params...)
	if params == "hit" {
		s = append(s, "; ttl="...)
		s = strconv.AppendInt(s, ttl, 10)
	}
	if detail != "" {
		s = append(s, "; detail="...)
		s = append(s, detail...)
	}
	h.AddBytesKV(strCacheStatus, s)
}

var strCacheStatus = []byte("Cache-Status")

// invalidating forwards an unsafe request; a non-error answer invalidates
// the entries of its target URI, and of the Location and Content-Location
// URIs on the same host (RFC 9111 section 4.4).
func (rc *routeCache) invalidating(x *exchange, next handler) {
	ctx := x.ctx
	kb := pool.Scratch.Get()
	defer pool.Scratch.Put(kb)
	kb.B = rc.appendKey(kb.B[:0], ctx, true)
	// The client's Host and request-target, for the other URIs' keys:
	// forwarding rewrites both.
	ob := pool.Scratch.Get()
	defer pool.Scratch.Put(ob)
	ob.B = append(ob.B[:0], ctx.Request.Header.Host()...)
	nh := len(ob.B)
	ob.B = append(ob.B, ctx.Request.Header.RequestURI()...)
	next(x)
	if s := ctx.Response.StatusCode(); s < 200 || s >= 400 || x.failed {
		return
	}
	rc.remove(x.e, kb.B)
	host := ob.B[:nh]
	var loc [2][]byte
	loc[0] = append(loc[0], ctx.Response.Header.Peek("Location")...)
	loc[1] = append(loc[1], ctx.Response.Header.Peek("Content-Location")...)
	for _, l := range loc {
		path, ok := sameOrigin(l, host)
		if !ok {
			continue
		}
		kb.B = rc.keyForURI(kb.B[:0], ctx, host, path)
		rc.remove(x.e, kb.B)
	}
	ctx.Request.Header.SetHostBytes(host)
	ctx.Request.SetRequestURIBytes(ob.B[nh:])
}

// keyForURI renders the key of a GET of path on host.
func (rc *routeCache) keyForURI(dst []byte, ctx *fasthttp.RequestCtx, host, path []byte) []byte {
	ctx.Request.Header.SetHostBytes(host)
	ctx.Request.SetRequestURIBytes(path)
	return rc.appendKey(dst, ctx, true)
}

// sameOrigin returns the path (and query) of a Location-style URI
// reference when it points to host: a relative reference, or an absolute
// one with that authority.
func sameOrigin(ref, host []byte) ([]byte, bool) {
	ref = trimOWS(ref)
	switch {
	case len(ref) == 0:
		return nil, false
	case ref[0] == '/' && (len(ref) == 1 || ref[1] != '/'):
		return ref, true
	}
	rest := ref
	if i := bytes.Index(rest, []byte("://")); i >= 0 {
		scheme := rest[:i]
		if !asciiEqualFold(scheme, "http") && !asciiEqualFold(scheme, "https") {
			return nil, false
		}
		rest = rest[i+3:]
	} else if bytes.HasPrefix(rest, []byte("//")) {
		rest = rest[2:]
	} else {
		return nil, false // a relative path without a slash: rare, skipped
	}
	end := bytes.IndexAny(rest, "/?#")
	auth := rest
	path := []byte("/")
	if end >= 0 {
		auth, path = rest[:end], rest[end:]
		if path[0] != '/' {
			path = append([]byte("/"), path...)
		}
	}
	if !bytes.EqualFold(auth, host) {
		return nil, false
	}
	if i := bytes.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	return path, true
}

// remove deletes the entry (or variant index) under a key, and the
// finished fill that may still answer for it until a slow write is done.
func (rc *routeCache) remove(e *Engine, key []byte) {
	e.fills.forget(key)
	rc.share.drop(key)
	if rc.async {
		e.writer.delete(rc.st, rc.share, key)
		return
	}
	rc.st.Delete(context.Background(), key) //nolint:errcheck // a failed delete leaves an cacheEntry to expire
	rc.share.drop(key)                      // a hit that read the store meanwhile kept nothing
}
