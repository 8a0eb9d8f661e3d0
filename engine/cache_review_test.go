package engine

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/store"
)

// Regression tests from a review of the response cache: each shows a way
// a client or an origin makes the cache store or serve what it must not.

// rawDo sends raw request bytes to vkp on a new connection and reads one
// response (without a body when head is set).
func rawDo(t *testing.T, addr, raw string, head bool) *fasthttp.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp := &fasthttp.Response{}
	resp.SkipBody = head
	if err := resp.Read(bufio.NewReaderSize(c, 64<<10)); err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return resp
}

// A HEAD request that finds a stale-while-revalidate entry starts the
// background refresh as a HEAD (the refresh copies the client's request
// header, method included): the origin's body-less answer to it was
// stored as the GET entry, and every later GET got an empty 200.
func TestCacheHeadDuringStaleWhileRevalidateKeepsBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []string // the origin's, besides Date and Cache-Control
	}{
		{name: "no validators"},
		{name: "changed ETag", hdr: []string{`ETag: "2"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := func(c *testClock, r originReq, n int) originResp {
				h := append([]string{"Date: " + c.date(0), "Cache-Control: max-age=1, stale-while-revalidate=60"}, tc.hdr...)
				if n == 1 && len(tc.hdr) > 0 {
					h[len(h)-1] = `ETag: "1"`
				}
				return originResp{body: "full body", header: h}
			}
			runCacheCase(t, cacheCase{name: tc.name, answer: answer, steps: []cacheStep{
				{wantCS: "stored", wantOrigin: 1, wantBody: "full body"},
				{advance: 2 * time.Second, method: "HEAD", wantCS: "detail=stale-while-revalidate", wantOrigin: -1, sleep: 300 * time.Millisecond},
				{wantOrigin: -1, wantBody: "full body"},
			}})
		})
	}
}

// nginxLikeOrigin answers each request as soon as its header is in,
// without reading a body first, and then discards as many bytes as the
// request announced, as nginx does (ngx_http_discard_request_body) before
// it reads the next request on the connection. It answers "page <target>"
// with max-age=1, stale-while-revalidate=60 and records each request's
// header length.
type nginxLikeOrigin struct {
	addr  string
	mu    sync.Mutex
	heads map[string]int // target -> length of its request head
	seen  []string
}

func startNginxLikeOrigin(t *testing.T, clk *testClock) *nginxLikeOrigin {
	o := &nginxLikeOrigin{heads: map[string]int{}}
	o.addr = rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			n, cl := len(line), 0
			target := strings.Fields(line + " x")[1]
			for {
				h, err := br.ReadString('\n')
				if err != nil {
					return
				}
				n += len(h)
				if h == "\r\n" {
					break
				}
				if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
					cl, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			o.mu.Lock()
			o.heads[target] = n
			o.seen = append(o.seen, strings.TrimSpace(line))
			o.mu.Unlock()
			body := "page " + target
			resp := "HTTP/1.1 200 OK\r\nDate: " + clk.date(0) + "\r\nCache-Control: max-age=1, stale-while-revalidate=60\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, br, int64(cl)); err != nil {
				return
			}
		}
	})
	return o
}

// The stale-while-revalidate refresh is built from the client's request
// header but without its body: a GET that came with "Content-Length: N"
// made vkp send the origin a GET announcing N bytes and sending none. An
// origin that answers first and then discards the announced body (nginx)
// takes the first N bytes of the next request vkp sends on that pooled
// connection as the body, and reads the rest as a request of its own:
// a client smuggles a request past vkp, and its answer is stored as
// another URI's (here /victim gets /evil's page for everyone).
func TestCacheBackgroundRefreshAnnouncesNoBody(t *testing.T) {
	clk := newTestClock()
	o := startNginxLikeOrigin(t, clk)
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
	c, addr := serveEngine(t, e)
	do(t, c, "GET", "/victim", nil, "Host", "x")
	do(t, c, "GET", "/r", nil, "Host", "x")
	smuggled := "GET /evil HTTP/1.1\r\nHost: a\r\n\r\n"
	poison := func(target string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: x\r\nCache-Control: no-cache\r\nContent-Length: " +
			strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled
	}
	// The length of the head vkp forwards for the poisoning request (the
	// attacker knows it: vkp's rewriting is deterministic).
	rawDo(t, addr, poison("/vict1m"), false)
	o.mu.Lock()
	n := o.heads["/vict1m"]
	o.mu.Unlock()

	clk.advance(2 * time.Second) // /r and /victim are stale, within stale-while-revalidate
	resp := rawDo(t, addr, "GET /r HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n"+strings.Repeat("x", n), false)
	if !strings.Contains(string(resp.Header.Peek("Cache-Status")), "stale-while-revalidate") {
		t.Fatalf("GET /r with a body: Cache-Status %q", resp.Header.Peek("Cache-Status"))
	}
	time.Sleep(300 * time.Millisecond) // the background refresh
	rawDo(t, addr, poison("/victim"), false)
	time.Sleep(100 * time.Millisecond)
	got := do(t, c, "GET", "/victim", nil, "Host", "x")
	o.mu.Lock()
	seen := append([]string(nil), o.seen...)
	o.mu.Unlock()
	for _, s := range seen {
		if strings.Contains(s, "/evil") {
			t.Errorf("the origin got a request vkp never sent: %q (all: %q)", s, seen)
		}
	}
	if string(got.Body()) != "page /victim" {
		t.Fatalf("GET /victim: %q (Cache-Status %q), want \"page /victim\"", got.Body(), got.Header.Peek("Cache-Status"))
	}
}

// pageOrigin answers "page <target>" for a minute; /faq varies on Accept.
func pageOrigin(t *testing.T, clk *testClock) *scriptOrigin {
	return startScriptOrigin(t, func(r originReq) originResp {
		h := []string{"Date: " + clk.date(0), "Cache-Control: max-age=60"}
		if r.target == "/faq" {
			return originResp{body: "faq for " + r.header.Get("Accept"), header: append(h, "Vary: Accept")}
		}
		return originResp{body: "page " + r.target, header: h}
	})
}

// A CacheKey's {Path} is the router's path (percent-decoded, "//" merged,
// dot-segments removed) while the origin gets the client's raw path: one
// client's request for a raw path the origin reads differently is stored
// under the key of another URI (the README's "{Method}_{Path}" example).
func TestCacheKeyTemplatePathIsTheForwardedPath(t *testing.T) {
	clk := newTestClock()
	o := pageOrigin(t, clk)
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory", "CacheKey": "{Method}_{Path}"}`, o.addr), Options{Now: clk.Now})
	c, addr := serveEngine(t, e)
	for _, tc := range []struct{ attack, victim string }{
		{"//home", "/home"},
		{"/x%2F..%2Fhome2", "/home2"},
	} {
		rawDo(t, addr, "GET "+tc.attack+" HTTP/1.1\r\nHost: x\r\n\r\n", false)
		resp := do(t, c, "GET", tc.victim, nil)
		if want := "page " + tc.victim; string(resp.Body()) != want {
			t.Errorf("GET %s after GET %s: %q (Cache-Status %q), want %q",
				tc.victim, tc.attack, resp.Body(), resp.Header.Peek("Cache-Status"), want)
		}
	}
}

// A variant's key is the primary key, a NUL, then the request's Vary
// values, each framed by a 1 or 2 and a NUL. A CacheKey that renders
// percent-decoded text ({Path}, {Query('x')}) lets a request's primary key
// be exactly another URI's variant key: its answer is then served as that
// variant.
func TestCacheKeyTemplateCannotForgeVariantKey(t *testing.T) {
	clk := newTestClock()
	o := pageOrigin(t, clk)
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory", "CacheKey": "{Method}_{Path}"}`, o.addr), Options{Now: clk.Now})
	c, addr := serveEngine(t, e)
	do(t, c, "GET", "/faq", nil, "Accept", "text/plain") // /faq now has a variant index
	rawDo(t, addr, "GET /faq%00%02text/html%00 HTTP/1.1\r\nHost: x\r\n\r\n", false)
	resp := do(t, c, "GET", "/faq", nil, "Accept", "text/html")
	if string(resp.Body()) != "faq for text/html" {
		t.Fatalf("GET /faq (Accept: text/html): %q (Cache-Status %q), want \"faq for text/html\"", resp.Body(), resp.Header.Peek("Cache-Status"))
	}
}

// stale-if-error lets a *stale* entry answer when revalidation fails,
// within its window. staleOnError compares age-lifetime with the window,
// which is negative for a fresh entry: a fresh entry that had to be
// validated (a no-cache answer, or a request with no-cache or max-age=0)
// was served when the origin failed, with no stale-if-error anywhere.
func TestCacheFreshEntryNeedingValidationIsNotServedOnError(t *testing.T) {
	for _, tc := range []struct {
		name string
		cc   string   // the stored answer's Cache-Control
		req  []string // the second request's header
	}{
		{name: "no-cache answer", cc: "no-cache, max-age=600"},
		{name: "request no-cache", cc: "max-age=600", req: []string{"Cache-Control", "no-cache"}},
		{name: "request max-age=0", cc: "max-age=600", req: []string{"Cache-Control", "max-age=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := func(c *testClock, r originReq, n int) originResp {
				if n == 1 {
					return originResp{body: "v1", header: []string{"Date: " + c.date(0), "Cache-Control: " + tc.cc, `ETag: "1"`}}
				}
				return originResp{status: 503, body: "down", header: []string{"Date: " + c.date(0)}}
			}
			runCacheCase(t, cacheCase{name: tc.name, answer: answer, steps: []cacheStep{
				{wantCS: "stored", wantOrigin: 1},
				{advance: time.Second, hdr: tc.req, wantStatus: 503, wantBody: "down", wantOrigin: 2},
			}})
		})
	}
}

// slowClients opens n connections to addr with a small receive buffer,
// sends each one request (GET path + "?i") and reads only the header,
// then leaves them stalled; they are closed when the test ends.
func slowClients(t *testing.T, addr, path string, n int) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) //nolint:errcheck
		})
	}}
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET "+path+"?"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Options.CacheFillMemory "bounds the bytes of streamed response bodies
// being captured for the cache at once", but a capture allocates its whole
// Content-Length up front (complete: size += cl) and is charged only for
// the bytes that arrived: clients asking distinct URIs of a large
// cacheable file and reading slowly hold the file's size each, while each
// is charged only what the socket buffers took (about 1-2 MiB on
// loopback). With the defaults (256 MiB budget, 64 MiB bodies) a couple
// hundred stalled connections hold gigabytes.
func TestCacheFillMemoryBoundsCaptures(t *testing.T) {
	const size = 32 << 20
	addr0 := startStreamingOrigin(t, size)
	const budget = 16 << 20
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, addr0), Options{CacheFillMemory: budget})
	_, addr := serveEngine(t, e)
	before := heapAfterGC()
	const n = 6
	slowClients(t, addr, "/big", n)
	time.Sleep(300 * time.Millisecond)
	grew := int64(heapAfterGC()) - int64(before)
	t.Logf("heap grew %d MiB with %d stalled fills (budget %d MiB, body %d MiB); fill memory charged %d KiB",
		grew>>20, n, budget>>20, size>>20, e.cacheFillMem.Load()>>10)
	// Generous: twice the budget, and per-connection buffers.
	if limit := int64(2*budget) + 16<<20; grew > limit {
		t.Fatalf("heap grew %d MiB with %d stalled fills, over %d MiB: the captures are not bounded by CacheFillMemory", grew>>20, n, limit>>20)
	}
}

// startStreamingOrigin answers every request with a cacheable body of size
// bytes, written from one small buffer (the origin holds no copy of it).
func startStreamingOrigin(t *testing.T, size int) string {
	chunk := []byte(strings.Repeat("x", 64<<10))
	return rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"); err != nil {
				return
			}
			for left := size; left > 0; left -= len(chunk) {
				if _, err := c.Write(chunk[:min(left, len(chunk))]); err != nil {
					return
				}
			}
		}
	})
}

// A hit reads the whole entry into a new buffer (Disk: readFile; Memory:
// bigcache's copy; Redis: the reply) and the response holds it until the
// client has taken the body. Clients that ask for a large cached object
// and read slowly hold one copy each: nothing bounds it (the README's
// "static" Disk route allows 256 MiB bodies; nginx sends such hits from
// the file).
func TestCacheHitsOfALargeEntryShareMemory(t *testing.T) {
	const size = 16 << 20
	addr0 := startStreamingOrigin(t, size)
	dir := t.TempDir()
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Disk"}`, addr0), Options{CacheStores: map[string]func() (store.Store, error){
		"disk": func() (store.Store, error) { return store.NewDisk(store.DiskOptions{Dir: dir}) },
	}})
	c, addr := serveEngine(t, e)
	do(t, c, "GET", "/big", nil, "Host", "x")
	var resp *fasthttp.Response
	for i := 0; i < 50; i++ { // the disk write is asynchronous
		time.Sleep(20 * time.Millisecond)
		if resp = do(t, c, "GET", "/big", nil, "Host", "x"); strings.Contains(string(resp.Header.Peek("Cache-Status")), "hit") {
			break
		}
	}
	if !strings.Contains(string(resp.Header.Peek("Cache-Status")), "hit") {
		t.Fatalf("not stored: %q", resp.Header.Peek("Cache-Status"))
	}
	resp = nil
	before := heapAfterGC()
	const n = 8
	for i := 0; i < n; i++ {
		slowClientsSameURI(t, addr, "/big")
	}
	time.Sleep(300 * time.Millisecond)
	grew := int64(heapAfterGC()) - int64(before)
	t.Logf("heap grew %d MiB with %d stalled hits of a %d MiB entry", grew>>20, n, size>>20)
	if limit := int64(3*size) + 16<<20; grew > limit {
		t.Fatalf("heap grew %d MiB with %d stalled hits of one %d MiB entry (over %d MiB): each hit holds its own copy", grew>>20, n, size>>20, limit>>20)
	}
}

// slowClientsSameURI is slowClients for one URI: one stalled connection.
func slowClientsSameURI(t *testing.T, addr, path string) {
	t.Helper()
	d := net.Dialer{Control: smallBuf(syscall.SO_RCVBUF, 4096)}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(buf), "hit") {
		t.Fatalf("not a hit: %q", buf)
	}
}

// slowSetStore is a store whose Set takes a while, as a Disk write of a
// large entry or a Redis SET of one does; Get and Delete are quick.
type slowSetStore struct {
	store.Store
	delay time.Duration
}

func (s slowSetStore) Set(ctx context.Context, key, val []byte, ttl time.Duration) error {
	time.Sleep(s.delay)
	return s.Store.Set(ctx, key, val, ttl)
}

// Writes to Disk and Redis go through a queue served by four workers, so
// a Delete queued after a Set can be done before it: an unsafe request's
// invalidation, sent after the GET's answer was complete and said
// "stored", is undone when the slower Set lands, and the old answer is
// served after a successful POST.
func TestCacheInvalidationAfterASlowWriteWins(t *testing.T) {
	clk := newTestClock()
	o := startScriptOrigin(t, func(r originReq) originResp {
		if r.method == "POST" {
			return originResp{status: 204}
		}
		return originResp{body: "version " + strconv.Itoa(len(r.target)), header: []string{"Date: " + clk.date(0), "Cache-Control: max-age=60"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Disk"}`, o.addr), Options{Now: clk.Now, CacheStores: map[string]func() (store.Store, error){
		"disk": func() (store.Store, error) {
			m, err := store.NewMemory(store.MemoryOptions{MaxBytes: 16 << 20, MaxEntry: 1 << 20})
			return slowSetStore{m, 300 * time.Millisecond}, err
		},
	}})
	c, _ := serveEngine(t, e)
	if cs := string(do(t, c, "GET", "/r", nil).Header.Peek("Cache-Status")); !strings.Contains(cs, "stored") {
		t.Fatalf("first GET: %q", cs)
	}
	if s := do(t, c, "POST", "/r", []byte("new")).StatusCode(); s != 204 {
		t.Fatalf("POST: %d", s)
	}
	time.Sleep(600 * time.Millisecond) // every queued write is done
	resp := do(t, c, "GET", "/r", nil)
	if cs := string(resp.Header.Peek("Cache-Status")); strings.Contains(cs, "hit") {
		t.Fatalf("GET after a successful POST: %q from the cache (Cache-Status %q), want it fetched again", resp.Body(), cs)
	}
}

// A client's conditional request is answered 304 from any entry, whatever
// its status: "If-None-Match: *" (or an If-Modified-Since at or after the
// entry's Date, which stands in for a missing Last-Modified) turns a
// cached 404, 410 or 301 into a 304, and the client keeps using whatever
// copy it had. RFC 9110 section 13.2.1: the conditions apply only when the
// answer would be 2xx (nginx's not_modified filter: 200 only).
func TestCacheConditionalRequestOnlyMatches2xx(t *testing.T) {
	for _, status := range []int{404, 301, 410} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			answer := func(c *testClock, r originReq, n int) originResp {
				h := []string{"Date: " + c.date(0), "Cache-Control: max-age=600"}
				if status == 301 {
					h = append(h, "Location: /elsewhere")
				}
				return originResp{status: status, body: "gone", header: h}
			}
			runCacheCase(t, cacheCase{name: strconv.Itoa(status), answer: answer, steps: []cacheStep{
				{wantStatus: status, wantCS: "stored", wantOrigin: 1},
				{advance: time.Minute, hdr: []string{"If-None-Match", "*"}, wantStatus: status, wantCS: "hit", wantOrigin: 1},
			}})
		})
	}
}

// A variant's key holds the request's values of the Vary fields but not
// their names, and the variant index at the primary key is replaced by
// whichever answer came last. An origin that varies one URI on different
// fields by request (CORS middleware: "Vary: Origin" when there is an
// Origin; compression: "Vary: Accept-Encoding" otherwise) lets a client
// store its answer in the slot another field's value selects: here the
// answer for "Origin: gzip" is served to clients sending
// "Accept-Encoding: gzip".
func TestCacheVariantKeyNamesItsFields(t *testing.T) {
	answer := func(c *testClock, r originReq, n int) originResp {
		h := []string{"Date: " + c.date(0), "Cache-Control: max-age=60"}
		if o := r.header.Get("Origin"); o != "" {
			return originResp{body: "cors for " + o, header: append(h, "Vary: Origin", "Access-Control-Allow-Origin: "+o)}
		}
		return originResp{body: "encoding " + r.header.Get("Accept-Encoding"), header: append(h, "Vary: Accept-Encoding")}
	}
	runCacheCase(t, cacheCase{name: "vary names", answer: answer, steps: []cacheStep{
		{hdr: []string{"Accept-Encoding", "br"}, wantBody: "encoding br", wantOrigin: 1},
		// Stores "cors for gzip" under the variant key of the values
		// "gzip", and makes the index say Origin.
		{hdr: []string{"Origin", "gzip"}, wantBody: "cors for gzip", wantOrigin: 2},
		// Makes the index say Accept-Encoding again.
		{hdr: []string{"Accept-Encoding", "identity"}, wantBody: "encoding identity", wantOrigin: 3},
		{hdr: []string{"Accept-Encoding", "gzip"}, wantBody: "encoding gzip", wantOrigin: -1, noHdr: []string{"Access-Control-Allow-Origin"}},
	}})
}

// ForceCache skips the Authorization rule with the Cache-Control ones
// (assess: the reqAuth check is in the !force branch), so a route with
// ForceCache and a CacheWhen that lets requests with Authorization use the
// cache stores one user's answer and serves it to the next. The README
// lists "a request with Authorization unless public, s-maxage or
// must-revalidate" among what is never stored, ForceCache or not.
func TestCacheForceCacheKeepsTheAuthorizationRule(t *testing.T) {
	answer := func(c *testClock, r originReq, n int) originResp {
		return originResp{body: "account of " + r.header.Get("Authorization"), header: []string{"Date: " + c.date(0)}}
	}
	runCacheCase(t, cacheCase{name: "force+auth", meta: `"ForceCache": true, "CacheWhen": "Method = 'GET'"`, answer: answer, steps: []cacheStep{
		{hdr: []string{"Authorization", "Bearer alice"}, wantBody: "account of Bearer alice", wantOrigin: 1},
		{hdr: []string{"Authorization", "Bearer bob"}, wantBody: "account of Bearer bob", wantOrigin: 2},
	}})
}

// Hit-for-pass markers are bounded by count (fillsMax, 65536) but each
// keeps its whole key, which holds the request-target: requests for
// distinct long URIs the origin answers 404 (no freshness: a marker for
// 10 s each) hold up to 65536 x ~16 KiB, a gigabyte, for 10 s.
func TestCacheHitForPassMarkersAreSmall(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(404) })
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{})
	c, _ := serveEngine(t, e)
	long := strings.Repeat("a", 14<<10)
	before := heapAfterGC()
	const n = 1500
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		do(t, c, "GET", "/"+strconv.Itoa(i)+long, nil)
	}
	grew := int64(heapAfterGC()) - int64(before)
	e.fills.mu.Lock()
	markers := len(e.fills.m)
	e.fills.mu.Unlock()
	t.Logf("%d markers, heap grew %d KiB (%d bytes per marker)", markers, grew>>10, grew/int64(max(markers, 1)))
	if per := grew / int64(max(markers, 1)); markers > 0 && per > 1<<10 {
		t.Fatalf("%d hit-for-pass markers hold %d KiB (%d bytes each): at fillsMax that is %d MiB",
			markers, grew>>10, per, per*fillsMax>>20)
	}
}

// A stale-while-revalidate refresh started by an HTTP/1.0 client copies
// its protocol: when the new answer streams without a Content-Length,
// roundTrip hands it to streamToHTTP10, which hijacks a connection the
// background RequestCtx does not have. The refresh reads the body itself
// but nothing ever closes the stream (the Response has no body stream to
// Reset): the answer is not stored, and the capture (charged to
// CacheFillMemory, holding the body) and the upstream connection stay
// until the hijack watchdog fires after --write-timeout (60 s). Each
// HTTP/1.0 request on the stale key starts another.
func TestCacheHTTP10RefreshIsStoredAndReleased(t *testing.T) {
	var n atomic.Int64
	clk := newTestClock()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The origin sends the test clock's Date: fasthttp's own is updated
	// once a second and may be a second behind the clock, which made v1
	// stale at once, refreshed (v2) before the HTTP/1.0 request, whose
	// refresh then stored v3.
	srv := &fasthttp.Server{NoDefaultDate: true, Handler: func(ctx *fasthttp.RequestCtx) {
		v := n.Add(1)
		ctx.Response.Header.Set("Date", clk.date(0))
		ctx.Response.Header.Set("Cache-Control", "max-age=1, stale-while-revalidate=600")
		body := "v" + strconv.FormatInt(v, 10) + " " + strings.Repeat("x", 200<<10)
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) { w.WriteString(body); w.Flush() }) //nolint:errcheck
	}}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	origin := ln.Addr().String()
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{Now: clk.Now})
	_, addr := serveEngine(t, e)
	get := func(proto string) *fasthttp.Response {
		return rawDo(t, addr, "GET /r "+proto+"\r\nHost: x\r\n\r\n", false)
	}
	get("HTTP/1.1")
	time.Sleep(100 * time.Millisecond)
	if r := get("HTTP/1.1"); !strings.HasPrefix(string(r.Body()), "v1 ") {
		t.Fatalf("v1 not stored: %q", r.Header.Peek("Cache-Status"))
	}
	clk.advance(5 * time.Second)
	if r := get("HTTP/1.0"); !strings.Contains(string(r.Header.Peek("Cache-Status")), "stale-while-revalidate") {
		t.Fatalf("HTTP/1.0 GET: %q", r.Header.Peek("Cache-Status"))
	}
	time.Sleep(500 * time.Millisecond) // the refresh
	if m := e.cacheFillMem.Load(); m != 0 {
		t.Errorf("after the refresh, %d bytes are still charged to CacheFillMemory", m)
	}
	if r := get("HTTP/1.1"); !strings.HasPrefix(string(r.Body()), "v2 ") {
		t.Errorf("after the HTTP/1.0 client's refresh the entry is %q (Cache-Status %q), want v2", r.Body()[:3], r.Header.Peek("Cache-Status"))
	}
}

// A revalidation's 304 is assessed with the request's directives, so a
// client that sends "Cache-Control: no-store" when the entry is stale has
// the refreshed entry refused ("request-no-store") and the stored one
// removed: any client can evict any stale entry with validators, which the
// origin has just confirmed. A request's no-store only forbids storing
// this request and its answer (RFC 9111 section 5.2.1.5).
func TestCacheRequestNoStoreDoesNotEvict(t *testing.T) {
	clk := newTestClock()
	o := startScriptOrigin(t, func(r originReq) originResp {
		h := []string{"Date: " + clk.date(0), "Cache-Control: max-age=10", `ETag: "1"`}
		if r.header.Get("If-None-Match") == `"1"` {
			return originResp{status: 304, header: h}
		}
		return originResp{body: "v", header: h}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
	c, _ := serveEngine(t, e)
	do(t, c, "GET", "/r", nil)
	clk.advance(20 * time.Second)
	if r := do(t, c, "GET", "/r", nil, "Cache-Control", "no-store"); string(r.Body()) != "v" {
		t.Fatalf("no-store GET: %q %q", r.Body(), r.Header.Peek("Cache-Status"))
	}
	// Still stored: a hit (refreshed) or a revalidation, not a miss.
	if cs := string(do(t, c, "GET", "/r", nil).Header.Peek("Cache-Status")); strings.Contains(cs, "uri-miss") {
		t.Fatalf("after a no-store request the entry is gone: Cache-Status %q", cs)
	}
}
