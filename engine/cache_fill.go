package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
	"github.com/vkp-proxy/vkp/store"
)

// Filling the cache: one upstream request per key at a time (fills),
// capturing a streamed body as the client receives it (cacheTee), writes
// to slow stores off the request path (storeWriter), and
// stale-while-revalidate refreshes in the background.

// fetch is one request the cache sends upstream, and what it needs to
// store the answer. It outlives the handler when the body streams: then
// only the fields below x are used.
type fetch struct {
	rc  *routeCache
	x   *exchange // the request being served; nil once its handler returned
	fwd string    // Cache-Status fwd= value: uri-miss, vary-miss, stale, request
	rq  cacheControl
	// the stale entry being revalidated (staleRaw nil: none)
	stale       cacheEntry
	staleRaw    []byte
	revalidated bool // validators of the stale cacheEntry were sent
	bg          bool // a background refresh: there is no client to answer
	// the response header's settings from the server, for a stale answer
	// (see answerWith); nil when there is no stale entry to answer with
	srv *fasthttp.ResponseHeader

	e      *Engine
	fl     *fill
	key    []byte // the lookup key: the primary key, maybe with Vary values
	keyBuf [128]byte
	pk     int    // length of the primary key in key
	host   []byte // the client's Host
	hostB  [64]byte
}

// run forwards the request, conditional when a stale entry has
// validators and the client sent none of its own, then completes it.
func (f *fetch) run(next handler) {
	x := f.x
	f.e = x.e
	h := &x.ctx.Request.Header
	f.host = append(f.hostB[:0], h.Host()...)
	if f.staleRaw != nil && f.stale.flags&entValidators != 0 &&
		len(h.Peek("If-None-Match")) == 0 && len(h.Peek("If-Modified-Since")) == 0 {
		if et := f.stale.field("ETag"); et != nil {
			h.SetBytesV("If-None-Match", et)
		}
		if lm := f.stale.field("Last-Modified"); lm != nil {
			h.SetBytesV("If-Modified-Since", lm)
		}
		f.revalidated = true
	}
	if f.staleRaw != nil && !f.bg {
		f.srv = srvHeaders.Get().(*fasthttp.ResponseHeader)
		x.ctx.Response.Header.CopyTo(f.srv)
	}
	reqTime := f.e.wallNow()
	next(x)
	f.complete(reqTime)
	if f.srv != nil { // used by complete only
		srvHeaders.Put(f.srv)
		f.srv = nil
	}
}

// srvHeaders hold fetch.srv: a revalidation's copy of the response header
// costs no allocation.
var srvHeaders = sync.Pool{New: func() any { return new(fasthttp.ResponseHeader) }}

// complete handles the upstream's answer: a 304 refreshes the stale
// entry, an error may be answered by it (stale-if-error), and a storable
// response is stored, now or, streamed, once its body has arrived whole.
func (f *fetch) complete(reqTime int64) {
	x := f.x
	ctx := x.ctx
	resp := &ctx.Response
	rh := &resp.Header
	status := resp.StatusCode()
	respTime := f.e.wallNow()
	if f.revalidated {
		// The validators were the cache's, not the client's: a 304 to
		// the client is for its own conditional request only.
		ctx.Request.Header.Del("If-None-Match")
		ctx.Request.Header.Del("If-Modified-Since")
	}
	if f.revalidated && status == fasthttp.StatusNotModified && !x.failed {
		if raw, stored, why := f.refreshed(rh, reqTime, respTime); raw != nil {
			ent, _ := decodeEntry(raw)
			if !f.bg {
				cs := "fwd=stale; fwd-status=304"
				if stored {
					cs = "fwd=stale; fwd-status=304; stored"
				}
				f.answerWith(&ent, respTime, cs, why)
			}
			return
		}
		// The 304 is about another response than the stored one:
		// nothing is updated, and the client, who asked for no 304,
		// gets the stored one.
		f.finish(nil, false)
		if !f.bg {
			f.answerWith(&f.stale, respTime, "fwd=stale; fwd-status=304", "not-updated")
		}
		return
	}
	if f.staleRaw != nil && (x.failed || status >= 500) && staleOnError(&f.stale, &f.rq, f.stale.currentAge(respTime)) {
		f.finish(nil, false)
		if !f.bg {
			var sb [48]byte
			fs := strconv.AppendInt(append(sb[:0], "fwd=stale; fwd-status="...), int64(status), 10)
			f.answerWith(&f.stale, respTime, b2s(fs), "stale-if-error")
		}
		return
	}
	if x.failed {
		f.finish(nil, false)
		f.status(rh, "", "")
		return
	}
	ri := readRespInfo(status, responseFields(rh))
	reqAuth := len(ctx.Request.Header.Peek("Authorization")) > 0
	m, why := f.rc.policy.assess(&ri, &f.rq, reqAuth, reqTime, respTime)
	cl := rh.ContentLength()
	if why == "" && cl > f.rc.maxBody {
		why = "too-large"
	}
	if why != "" {
		f.finish(nil, hitForPass(why, status))
		f.status(rh, "", why)
		return
	}
	var vals []byte
	if len(ri.vary) > 0 {
		vals = appendVaryValues(nil, ri.vary, &ctx.Request.Header, f.host)
	}
	hb := pool.Scratch.Get()
	hb.B = appendFields(hb.B[:0], rh)
	if len(rh.Peek("Date")) == 0 {
		// The client got the server's Date (ensureDate); the entry keeps
		// the time it arrived.
		var db [32]byte
		hb.B = appendField(hb.B, strDate, appendHTTPDate(db[:0], time.Unix(0, respTime)))
	}
	size := len(hb.B) + len(vals) + 64
	if s := x.stream; s != nil {
		// Requests waiting for this key go upstream themselves now: the
		// body arrives as fast as this client takes it, and a slow
		// client must not hold every other request for the key. The
		// entry is still stored once the body is whole.
		f.finish(nil, false)
		t := &cacheTee{f: f, m: m, names: ri.vary, want: cl}
		t.buf = appendEntry(make([]byte, 0, size+teeFirst), &m, status, hb.B, vals)
		pool.Scratch.Put(hb)
		t.head = len(t.buf)
		t.limit = t.head + f.rc.maxBody
		t.start()
		s.setTee(t)
		f.x = nil
		f.status(rh, "", "")
		return
	}
	body := resp.Body()
	if len(body) > f.rc.maxBody {
		pool.Scratch.Put(hb)
		f.finish(nil, true)
		f.status(rh, "", "too-large")
		return
	}
	raw := appendEntry(make([]byte, 0, size+len(body)), &m, status, hb.B, vals)
	pool.Scratch.Put(hb)
	raw = append(raw, body...)
	f.status(rh, "; stored", "")
	f.store(raw, &m, ri.vary, nil)
}

// answerWith answers with an entry (the stale one, or the one a 304
// refreshed) instead of the upstream's answer. That answer (or the error
// put in its place) may have reset the response header, which drops the
// server's settings: without NoDefaultDate the server's Date would replace
// the stored one, without NoDefaultContentType a Content-Type would be
// invented. A hit has them, whether its header is parsed or copied from a
// hot copy's decoded one (which carries them), so the answer gets them
// back first.
func (f *fetch) answerWith(e *cacheEntry, respTime int64, cs, detail string) {
	// An error's body may be streaming (to an HTTP/1.0 client by taking
	// its connection over): the entry answers instead.
	f.x.dropStream()
	if f.srv != nil {
		f.srv.CopyTo(&f.x.ctx.Response.Header)
	}
	f.rc.answerOrFail(f.x, e, e.currentAge(respTime), cs, detail)
}

// status adds the Cache-Status of a forwarded request.
func (f *fetch) status(h *fasthttp.ResponseHeader, stored, detail string) {
	if f.bg {
		return
	}
	var b [64]byte
	s := append(append(append(b[:0], "fwd="...), f.fwd...), stored...)
	addCacheStatus(h, b2s(s), detail, 0)
}

// hitForPass reports whether a response not stored for reason why says
// the resource is not cacheable for a while, so that the requests for it
// stop waiting on one another (a request-specific reason says nothing).
func hitForPass(why string, status int) bool {
	switch why {
	case "request-no-store", "not-modified", "partial-content":
		return false
	}
	return status < 500
}

// refreshed merges a 304's header fields into the stale entry (RFC 9111
// section 3.2: each field the 304 has replaces the stored one, but
// Content-Length), stores the result with its new freshness (stored) and
// returns it; nil when the 304's validator does not match the stored
// response (section 4.3.4). When the merged response may no longer be
// stored, the entry is removed, and the merged response, returned with
// why, is still the answer (the 304 was about it).
func (f *fetch) refreshed(h *fasthttp.ResponseHeader, reqTime, respTime int64) (raw []byte, stored bool, why string) {
	old := &f.stale
	if et := h.Peek("ETag"); len(et) > 0 {
		if cur := old.field("ETag"); cur == nil || !bytes.Equal(trimWeak(et), trimWeak(cur)) {
			return nil, false, ""
		}
	}
	hb := pool.Scratch.Get()
	defer pool.Scratch.Put(hb)
	// A 304 without Date is dated when it arrived (RFC 9110 section
	// 6.6.1), as a stored response without one is (complete): that Date
	// replaces the stored one, else the refreshed entry would be as old
	// as the stored Date says, stale again at once.
	noDate := len(h.Peek("Date")) == 0
	for hd := old.hdrs; len(hd) > 0; {
		var k, v []byte
		k, v, hd = nextField(hd)
		if len(h.Peek(b2s(k))) > 0 && updatable(k) || noDate && asciiEqualFold(k, "Date") {
			continue
		}
		hb.B = appendField(hb.B, k, v)
	}
	for k, v := range h.All() {
		if updatable(k) && storedHeader(k) {
			hb.B = appendField(hb.B, k, v)
		}
	}
	if noDate {
		var db [32]byte
		hb.B = appendField(hb.B, strDate, appendHTTPDate(db[:0], time.Unix(0, respTime)))
	}
	// The merged fields decide the new freshness; the 304's Date and Age
	// the new age.
	var tmp cacheEntry
	tmp.hdrs = hb.B
	ri := readRespInfo(old.status, entryFields(&tmp))
	if l := h.Peek("Age"); len(l) > 0 {
		ri.age, ri.hasAge = parseAge(l)
	} else {
		ri.hasAge = false
	}
	// The answer's directives decide whether the entry may stay; the
	// request's no-store only keeps this exchange out of the store (RFC
	// 9111 section 5.2.1.5): it must not let any client evict an entry
	// the origin has just confirmed.
	rq := f.rq
	rq.flags &^= ccNoStore
	m, why := f.rc.policy.assess(&ri, &rq, false, reqTime, respTime)
	if why != "" {
		// Now uncacheable (no-store, private, a Set-Cookie...): the stale
		// entry goes; the merged response answers, as of its arrival.
		f.rc.remove(f.e, f.key)
		f.finish(nil, false)
		m = entryMeta{stored: respTime, age: initialAge(&ri, reqTime, respTime)}
	}
	raw = appendEntry(make([]byte, 0, len(hb.B)+len(old.vary)+len(old.body)+64), &m, old.status, hb.B, old.vary)
	raw = append(raw, old.body...)
	switch {
	case why != "":
		return raw, false, why
	case f.rq.has(ccNoStore):
		// Answered from the merged entry, which is not stored: the stored
		// one stays as it was.
		f.finish(nil, false)
		return raw, false, ""
	}
	f.store(raw, &m, nil, f.key)
	return raw, true, ""
}

func trimWeak(t []byte) []byte {
	t = trimOWS(t)
	if len(t) > 2 && t[0] == 'W' && t[1] == '/' {
		return t[2:]
	}
	return t
}

// updatable reports whether a 304's field replaces the stored one.
func updatable(k []byte) bool {
	return !asciiEqualFold(k, "Content-Length") && !asciiEqualFold(k, "Content-Encoding") && !asciiEqualFold(k, "Transfer-Encoding")
}

// store publishes a complete entry: under key when given (a refreshed
// entry keeps its own), else under the primary key, or, for a response
// with Vary, under its variant's key with an index at the primary key.
// Waiters get it at once.
func (f *fetch) store(raw []byte, m *entryMeta, names, key []byte) {
	ttl := storeTTL(m)
	rc, e := f.rc, f.e
	rc.stats.stored.Inc()
	pk := f.key[:f.pk]
	keep := rc.async
	fl := f.fl
	if fl == nil && keep && key == nil {
		// A streamed answer's fill was released when it started streaming:
		// until the slow store has the entry, one that holds it answers
		// newcomers (else each would go to the origin meanwhile).
		fl = e.fills.settled(f.key, raw)
	}
	switch {
	case key != nil:
		rc.put(e, key, raw, ttl, fl)
	case names == nil:
		rc.put(e, pk, raw, ttl, fl)
	default:
		ent, _ := decodeEntry(raw)
		vk := append(append(append(make([]byte, 0, len(pk)+1+len(ent.vary)), pk...), 0), ent.vary...)
		rc.put(e, vk, raw, ttl, fl)
		rc.put(e, pk, appendIndexEntry(nil, names), max(ttl, validatorKeep), nil)
	}
	e.fills.finish(fl, raw, false, keep, e.wallNow())
	f.fl = nil
}

// finish ends the fill without an entry.
func (f *fetch) finish(raw []byte, pass bool) {
	if f.fl != nil {
		f.e.fills.finish(f.fl, raw, pass, false, f.e.wallNow())
		f.fl = nil
	}
}

// put stores one value: at once in memory, through the writer for slow
// stores, which then ends fl's publication.
func (rc *routeCache) put(e *Engine, key, val []byte, ttl time.Duration, fl *fill) {
	rc.share.drop(key)
	if rc.async {
		e.writer.set(rc.st, rc.share, key, val, ttl, fl, &e.fills)
		return
	}
	if err := rc.st.Set(context.Background(), key, val, ttl); err != nil && !errors.Is(err, store.ErrTooLarge) {
		e.log.Debug("cache store failed", "store", rc.kind, "error", err.Error())
	}
	rc.share.drop(key)
}

// collapsed waits for the fill another request leads and answers with
// its entry; false when there is none to share (or it varies on
// something this request differs in, or the wait was too long).
func (rc *routeCache) collapsed(x *exchange, fl *fill, fwd string) bool {
	t := time.NewTimer(rc.timeout)
	select {
	case <-fl.done:
		t.Stop()
	case <-t.C:
		return false
	}
	if fl.raw == nil {
		return false
	}
	ent, err := decodeEntry(fl.raw)
	if err != nil {
		return false
	}
	if len(ent.vary) > 0 {
		var lines [4][]byte
		names, _ := varyNames(ent.fieldLines(lines[:0], "Vary"))
		vb := pool.Scratch.Get()
		vb.B = appendVaryValues(vb.B[:0], names, &x.ctx.Request.Header, x.ctx.Request.Header.Host())
		same := bytes.Equal(vb.B, ent.vary)
		pool.Scratch.Put(vb)
		if !same {
			return false
		}
	}
	return rc.answer(x, &ent, ent.currentAge(x.e.wallNow()), "fwd="+fwd+"; collapsed", "")
}

// fills are the upstream requests the cache has in flight, by key: the
// first request for a key leads, the next ones wait for its answer. After
// an answer that cannot be stored the key is marked for a while
// (hitForPassFor): requests for it then go upstream at once, each on its
// own, instead of waiting in line. The map is touched only on misses.
//
// The map holds a 128-bit hash of each key, not the key: a key holds the
// request-target, and up to fillsMax markers of 16 KiB URIs would hold a
// gigabyte. The hash is seeded per process (hash/maphash, two seeds), so
// no client can make two keys collide on purpose.
type fills struct {
	mu    sync.Mutex
	m     map[fillKey]*fill
	seeds [2]maphash.Seed
}

// fillKey is a key's hash (fills.hash).
type fillKey [16]byte

// fill is one key's upstream request.
type fill struct {
	key       fillKey
	done      chan struct{} // closed when raw is set (or will stay nil)
	raw       []byte        // the cacheEntry, immutable; nil: nothing to share
	passUntil int64         // a hit-for-pass marker until then (unix ns)
}

const (
	fillLeader = iota
	fillWaiter
	fillPass

	hitForPassFor = 10 * time.Second
	fillsSweepAt  = 4096  // map size from which expired markers are swept
	fillsMax      = 65536 // no more markers past it (many URIs, each uncacheable)
)

// hash returns key's map key; fs.mu is held.
func (fs *fills) hash(key []byte) fillKey {
	if fs.m == nil {
		fs.m = map[fillKey]*fill{}
		fs.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	}
	var k fillKey
	binary.LittleEndian.PutUint64(k[:8], maphash.Bytes(fs.seeds[0], key))
	binary.LittleEndian.PutUint64(k[8:], maphash.Bytes(fs.seeds[1], key))
	return k
}

// join returns the key's fill and this request's role in it.
func (fs *fills) join(key []byte, now int64) (*fill, int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	hk := fs.hash(key)
	if f, ok := fs.m[hk]; ok {
		if f.passUntil == 0 {
			return f, fillWaiter
		}
		if now < f.passUntil {
			return nil, fillPass
		}
		delete(fs.m, hk)
	}
	if len(fs.m) >= fillsSweepAt {
		for k, f := range fs.m {
			if f.passUntil != 0 && now >= f.passUntil {
				delete(fs.m, k)
			}
		}
	}
	f := &fill{key: hk, done: make(chan struct{})}
	fs.m[hk] = f
	return f, fillLeader
}

// finish ends a fill: waiters get raw (nil: nothing). pass leaves a
// hit-for-pass marker; keep leaves the fill to answer newcomers until a
// slow store has the entry (then release removes it).
func (fs *fills) finish(f *fill, raw []byte, pass, keep bool, now int64) {
	if f == nil {
		return
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	select {
	case <-f.done:
		return // already finished
	default:
	}
	f.raw = raw
	close(f.done)
	if keep && raw != nil {
		return
	}
	if pass && raw == nil && len(fs.m) < fillsMax {
		// A new marker: the finished fill's waiters still hold f.
		fs.m[f.key] = &fill{key: f.key, passUntil: now + int64(hitForPassFor)}
		return
	}
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
}

// settled registers a finished fill holding raw for key, kept until a
// slow store's write of it is done (release); nil when the key has a fill
// already, or there are fillsMax.
func (fs *fills) settled(key, raw []byte) *fill {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	hk := fs.hash(key)
	if _, ok := fs.m[hk]; ok || len(fs.m) >= fillsMax {
		return nil
	}
	f := &fill{key: hk, done: make(chan struct{}), raw: raw}
	close(f.done)
	fs.m[hk] = f
	return f
}

// release removes a finished fill kept for a slow store's write.
func (fs *fills) release(f *fill) {
	fs.mu.Lock()
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
	fs.mu.Unlock()
}

// forget removes the finished fill kept for key's slow write, if any: an
// invalidation of key must not leave it answering newcomers with the
// entry it removes. A fill still in flight, and a marker, stay.
func (fs *fills) forget(key []byte) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m == nil {
		return
	}
	hk := fs.hash(key)
	if f, ok := fs.m[hk]; ok && f.passUntil == 0 && f.raw != nil {
		delete(fs.m, hk)
	}
}

// cacheTee captures a streamed response body for the cache as the client
// receives it. The entry is stored only if the body arrived whole (and,
// with a Content-Length, of that length) and within the route's limit and
// the engine's fill memory; otherwise the capture is dropped and the
// stream goes on untouched.
//
// The buffer grows as bytes arrive (doubling, never past the announced
// length or the limit), not to the Content-Length up front, and
// Options.CacheFillMemory is charged for what the buffer holds (its
// capacity) before it grows: a client reading a large answer slowly holds
// only what has arrived, and the captures together stay within the
// budget. A growth the budget refuses drops the capture.
type cacheTee struct {
	f       *fetch
	m       entryMeta
	names   []byte
	buf     []byte // the cacheEntry's head, then the body so far
	head    int
	limit   int
	want    int // Content-Length, or -1
	over    bool
	charged int64 // cap(buf), charged to CacheFillMemory
}

// teeFirst is the body room a capture starts with.
const teeFirst = 64 << 10

// start charges the first buffer, or drops the capture.
func (t *cacheTee) start() {
	e := t.f.e
	n := int64(cap(t.buf))
	if e.cacheFillMem.Add(n) > e.opts.CacheFillMemory {
		e.cacheFillMem.Add(-n)
		t.over, t.buf = true, nil
		return
	}
	t.charged = n
}

// write appends body bytes (respStream.Read calls it).
func (t *cacheTee) write(p []byte) {
	if t.over || len(p) == 0 {
		return
	}
	need := len(t.buf) + len(p)
	if need > t.limit || t.want >= 0 && need > t.head+t.want {
		t.drop()
		return
	}
	if need > cap(t.buf) && !t.grow(need) {
		t.drop()
		return
	}
	t.buf = append(t.buf, p...)
}

// grow moves the capture to a buffer of at least need bytes, charged
// first; false when the budget refuses.
func (t *cacheTee) grow(need int) bool {
	n := max(2*cap(t.buf), need)
	if t.want >= 0 {
		n = min(n, t.head+t.want)
	}
	n = max(min(n, t.limit), need)
	e := t.f.e
	d := int64(n - cap(t.buf))
	if e.cacheFillMem.Add(d) > e.opts.CacheFillMemory {
		e.cacheFillMem.Add(-d)
		return false
	}
	t.charged += d
	nb := make([]byte, len(t.buf), n)
	copy(nb, t.buf)
	t.buf = nb
	return true
}

func (t *cacheTee) drop() {
	t.over = true
	t.buf = nil
	t.f.e.cacheFillMem.Add(-t.charged)
	t.charged = 0
}

// end is called once when the stream closes; whole reports that the body
// was read to its end and written to the client.
func (t *cacheTee) end(whole bool) {
	f := t.f
	f.e.cacheFillMem.Add(-t.charged)
	t.charged = 0
	if !whole || t.over || t.want >= 0 && len(t.buf)-t.head != t.want {
		f.finish(nil, t.over)
		return
	}
	f.store(t.buf, &t.m, t.names, nil)
}

// storeWriter writes to the slow stores (disk, Redis) off the request
// path: a bounded queue per worker. A full queue drops the write (the entry
// is simply not cached); a write never delays a client. A key's writes all
// go to one worker (by a hash of the key), so they are done in the order
// they were queued: a Delete queued after a Set of the same key (an
// unsafe request's invalidation) is never overtaken by that Set.
type storeWriter struct {
	chs     [storeWriters]chan storeOp
	seed    maphash.Seed
	stop    chan struct{}
	wg      sync.WaitGroup
	dropped atomic.Uint64
	log     *slog.Logger
	once    sync.Once
}

type storeOp struct {
	st    store.Store
	share *sharedHits // the key's shared copy is dropped once written
	key   []byte
	val   []byte // nil: delete
	ttl   time.Duration
	fl    *fill // released from fills once written
	fills *fills
}

const (
	storeWriters     = 4
	storeWriterQueue = 1024 // in all, storeWriterQueue/storeWriters per worker
)

func newStoreWriter(log *slog.Logger) *storeWriter {
	w := &storeWriter{stop: make(chan struct{}), log: log, seed: maphash.MakeSeed()}
	for i := range w.chs {
		w.chs[i] = make(chan storeOp, storeWriterQueue/storeWriters)
		w.wg.Add(1)
		go w.work(w.chs[i])
	}
	return w
}

func (w *storeWriter) work(ch chan storeOp) {
	defer w.wg.Done()
	for {
		select {
		case op := <-ch:
			w.do(op)
		case <-w.stop:
			for {
				select {
				case op := <-ch:
					w.do(op)
				default:
					return
				}
			}
		}
	}
}

func (w *storeWriter) do(op storeOp) {
	var err error
	if op.val == nil {
		err = op.st.Delete(context.Background(), op.key)
	} else {
		err = op.st.Set(context.Background(), op.key, op.val, op.ttl)
	}
	if err != nil && !errors.Is(err, store.ErrTooLarge) && w.log.Enabled(context.Background(), slog.LevelDebug) {
		w.log.Debug("cache store failed", "error", err.Error())
	}
	op.share.drop(op.key)
	if op.fl != nil {
		op.fills.release(op.fl)
	}
}

// set queues a write; key is copied, val must not change afterwards.
func (w *storeWriter) set(st store.Store, sh *sharedHits, key, val []byte, ttl time.Duration, fl *fill, fs *fills) {
	w.queue(storeOp{st: st, share: sh, key: append([]byte(nil), key...), val: val, ttl: ttl, fl: fl, fills: fs})
}

// delete queues a deletion.
func (w *storeWriter) delete(st store.Store, sh *sharedHits, key []byte) {
	w.queue(storeOp{st: st, share: sh, key: append([]byte(nil), key...)})
}

func (w *storeWriter) queue(op storeOp) {
	ch := w.chs[maphash.Bytes(w.seed, op.key)%storeWriters]
	select {
	case <-w.stop:
	case ch <- op:
		return
	default:
	}
	w.dropped.Add(1)
	if op.fl != nil {
		op.fills.release(op.fl)
	}
}

// close stops the workers once the queue is written, or when ctx ends.
func (w *storeWriter) close(ctx context.Context) {
	w.once.Do(func() { close(w.stop) })
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// backgroundRefreshes bounds the stale-while-revalidate refreshes in
// flight; beyond it a stale answer is served without one.
const backgroundRefreshes = 64

// refreshInBackground refreshes a stale entry served under
// stale-while-revalidate: one refresh per key at a time, its answer
// stored as a miss's would be. The refresh is a bodyless HTTP/1.1 GET
// built from the client's header (refreshRequest): whatever the client
// sent (HEAD, HTTP/1.0, a body) was answered from the cache and must not
// shape the request that refills the entry.
func (rc *routeCache) refreshInBackground(x *exchange, next handler, key []byte, pk int, stale *cacheEntry, raw []byte) {
	e := x.e
	fl, role := e.fills.join(key, e.wallNow())
	if role != fillLeader {
		return
	}
	if e.bgRefresh.Add(1) > backgroundRefreshes {
		e.bgRefresh.Add(-1)
		e.fills.finish(fl, nil, false, false, 0)
		return
	}
	req := fasthttp.AcquireRequest()
	refreshRequest(&req.Header, &x.ctx.Request.Header)
	f := &fetch{rc: rc, fwd: "stale", rq: parseCacheControl(nil), stale: *stale, staleRaw: raw, bg: true, fl: fl, pk: pk}
	f.key = append(f.keyBuf[:0], key...)
	remote, route := x.ctx.RemoteAddr(), x.route
	e.bgWG.Add(1)
	go func() {
		defer e.bgWG.Done()
		defer e.bgRefresh.Add(-1)
		var ctx fasthttp.RequestCtx
		ctx.Init(req, remote, nil)
		fasthttp.ReleaseRequest(req)
		bx := e.acquireExchange(&ctx)
		bx.route = route
		bx.startBody()
		f.x = bx
		f.run(next)
		if s := bx.stream; s != nil {
			// Nobody reads this body but the cache: read it here.
			buf := make([]byte, 32<<10)
			for {
				if _, err := s.Read(buf); err != nil {
					break
				}
			}
		}
		ctx.Response.Reset() // closes a stream: the tee stores what it read
		f.finish(nil, false) // when nothing was stored
		bx.release()
	}()
}

// refreshHeaderDrops are the client's fields a background refresh does
// not send: its framing (the client's body is not sent, so announcing it
// would let the next request on the pooled upstream connection be read as
// that body), its expectation, its range and conditionals (the refresh
// wants the whole current answer; the entry's own validators are added by
// fetch.run), and its cache directives (they were the client's, answered
// from the cache).
var refreshHeaderDrops = []string{
	"Content-Length", "Transfer-Encoding", "Expect", "Range", "If-Range",
	"If-Match", "If-Unmodified-Since", "If-None-Match", "If-Modified-Since",
	"Cache-Control", "Pragma",
}

// refreshRequest sets dst to the background refresh of the request src:
// an HTTP/1.1 GET of the same target with the client's other fields (the
// ones a Vary or the origin may depend on), announcing no body.
func refreshRequest(dst, src *fasthttp.RequestHeader) {
	src.CopyTo(dst)
	dst.SetMethod(fasthttp.MethodGet)
	// The refresh has no client connection: HTTP/1.0's answer path
	// (streamToHTTP10) would hijack one, and its keep-alive rules are the
	// client's.
	dst.SetProtocolBytes(strHTTP11)
	dst.ResetConnectionClose()
	for _, k := range refreshHeaderDrops {
		dst.Del(k)
	}
	dst.SetContentLength(0)
	dst.Del("Content-Length")
}
