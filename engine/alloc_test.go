//go:build !race

package engine

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func TestRouteMatchAllocatesNothing(t *testing.T) {
	rt := mustEngine(t, precedenceConfig, Options{}).Current().Router
	ctxs := []*fasthttp.RequestCtx{
		reqCtx("GET", "api.com:9999", "/x"),
		reqCtx("GET", "v1.api.com", "/x"),
		reqCtx("GET", "other.net", "/a/b/x"),
		reqCtx("GET", "m.net", "/q"),
		reqCtx("GET", "ab.io", "/", "x-env", "test"),
	}
	for _, ctx := range ctxs {
		if n := testing.AllocsPerRun(200, func() { rt.Match(ctx) }); n != 0 {
			t.Errorf("Match(%s %s) allocates %.1f times", ctx.Host(), ctx.Path(), n)
		}
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	d := testDests(5)
	ctx := reqCtx("GET", "h", "/?k=v", "X-Forwarded-For", "10.1.2.3", "Cookie", "sid=1")
	for _, p := range []Picker{
		&RandomPicker{Rand: defaultIntN}, &RoundRobinPicker{}, LeastRequestsPicker{}, &P2CPicker{Rand: defaultIntN},
		&HashPicker{By: HashByHeader, Key: "X-Forwarded-For", Rand: defaultIntN},
		&HashPicker{By: HashByCookie, Key: "sid", Rand: defaultIntN},
		&HashPicker{By: HashByQuery, Key: "k", Rand: defaultIntN},
		&HashPicker{By: HashByHeader, Key: "X-Missing", Rand: defaultIntN},
	} {
		if n := testing.AllocsPerRun(200, func() { p.Pick(&ctx.Request, d) }); n != 0 {
			t.Errorf("%T.Pick allocates %.1f times", p, n)
		}
	}
}

func TestProxiedGETAllocatesNothing(t *testing.T) {
	body := make([]byte, 128)
	e := inmemEngine(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl)
	if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 128 {
		t.Fatalf("proxied GET: %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
	}
	if n := testing.AllocsPerRun(500, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Fatalf("a proxied GET allocates %.2f times (origin included)", n)
	}
	if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 128 {
		t.Fatalf("after the runs: %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
	}
}

// Over real sockets the upstream connections are liveConns: their read and
// write wrappers (busy connections, no idle check) must not allocate either.
func TestProxiedGETOverTCPAllocatesNothing(t *testing.T) {
	body := make([]byte, 128)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	e := mustEngine(t, oneRoute("", origin), Options{})
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl)
	if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 128 {
		t.Fatalf("proxied GET: %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
	}
	if n := testing.AllocsPerRun(500, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Fatalf("a proxied GET over TCP allocates %.2f times (origin included)", n)
	}
}

// A browser's navigation request: Connection: keep-alive to strip, many
// headers, names that share their length and ends (Sec-Fetch-Site and
// Sec-Fetch-Mode) but none repeated. Proxying it allocates nothing.
const browserGET = "GET /api/items?id=42 HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive\r\n" +
	"Cache-Control: max-age=0\r\nsec-ch-ua: \"Chromium\";v=\"124\"\r\nsec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\n" +
	"Upgrade-Insecure-Requests: 1\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html,*/*;q=0.8\r\n" +
	"Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\nCookie: sid=1\r\n\r\n"

func TestProxiedBrowserGETAllocatesNothing(t *testing.T) {
	body := make([]byte, 128)
	e := inmemEngine(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Connection", "keep-alive")
		ctx.SetBody(body)
	})
	tmpl := &fasthttp.Request{}
	if err := tmpl.Read(bufio.NewReader(strings.NewReader(browserGET))); err != nil {
		t.Fatal(err)
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	proxiedGET(e, ctx, tmpl)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	if n := testing.AllocsPerRun(300, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Errorf("a proxied browser GET allocates %.2f times", n)
	}
}

// Messages that repeat a name take the slow path of the header rewrite
// when something is deleted; it allocates nothing either (pooled), nor do
// repeated cookies, which fasthttp keeps apart.
func TestHeaderRewriteAllocatesNothing(t *testing.T) {
	reqs := map[string]string{
		"repeated name, nothing to strip": "GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\nAccept: b\r\n\r\n",
		"repeated name and keep-alive":    "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nVia: 1.1 a\r\nX-A: 1\r\nVia: 1.1 b\r\n\r\n",
		"two X-Forwarded-For lines":       "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nX-Forwarded-For: 1.1.1.1\r\nX-A: 1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
		"two cookies and keep-alive":      "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
	}
	for name, raw := range reqs {
		var tmpl, req fasthttp.Request
		if err := tmpl.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() {
			tmpl.CopyTo(&req)
			rewriteForUpstream(&req.Header, []byte("9.9.9.9"), false, nil)
		}); n != 0 {
			t.Errorf("request, %s: %.1f allocations", name, n)
		}
	}
	resps := map[string]string{
		"two Set-Cookie and keep-alive": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
		"two Vary and keep-alive":       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nVary: Origin\r\nX-A: 1\r\nVary: Accept-Encoding\r\n\r\n",
	}
	for name, raw := range resps {
		var tmpl, h fasthttp.ResponseHeader
		if err := tmpl.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() {
			tmpl.CopyTo(&h)
			stripHopResponse(&h)
		}); n != 0 {
			t.Errorf("response, %s: %.1f allocations", name, n)
		}
	}
}

// A small chunked answer (what many frameworks send) is read whole and sent
// with a Content-Length, allocating nothing either. The origin writes the
// whole answer, end chunk included, at once: a fasthttp origin flushes its
// end chunk apart, and when that arrives late the answer streams (as it
// must), which made this test flaky.
func TestProxiedChunkedGETAllocatesNothing(t *testing.T) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" +
		strings.Repeat("x", 300) + "\r\n0\r\n\r\n")
	ln := fasthttputil.NewInmemoryListener()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for { // a GET: its header ends the request
						l, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(l) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	e := mustEngine(t, oneRoute("", "origin.test:80"), Options{Dial: func(string) (net.Conn, error) { return ln.Dial() }})
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl)
	if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 300 {
		t.Fatalf("proxied GET: %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
	}
	if n := testing.AllocsPerRun(300, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Fatalf("a proxied GET with a chunked answer allocates %.2f times (origin included)", n)
	}
}

// A cache hit of a hot entry (one read from the store less than hotHold
// ago) allocates nothing: the entry is decoded in place from the shared
// copy and the response points into it. Once the hold has passed, a hit
// allocates only what the store's Get does (bigcache copies the entry,
// and the key for its collision check).
func TestCacheHitAllocations(t *testing.T) {
	body := make([]byte, 4<<10)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=600")
		ctx.Response.Header.Set("ETag", `"x"`)
		ctx.SetBody(body)
	})
	clock := time.Now()
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{Now: func() time.Time { return clock }})
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl)
	proxiedGET(e, ctx, tmpl)
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(cs, "vkp; hit") || len(ctx.Response.Body()) != len(body) {
		t.Fatalf("second GET: Cache-Status %q, %d bytes", cs, len(ctx.Response.Body()))
	}
	if n := testing.AllocsPerRun(500, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Fatalf("a hot cache hit allocates %.2f times", n)
	}
	st, _ := e.reg.stores.open("memory")
	key := []byte("r#GET api.example.com/api/items?id=42")
	storeAllocs := testing.AllocsPerRun(500, func() { st.Get(context.Background(), key) }) //nolint:errcheck
	n := testing.AllocsPerRun(500, func() {
		clock = clock.Add(time.Duration(hotHold)) // every hit reads the store
		proxiedGET(e, ctx, tmpl)
	})
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(cs, "vkp; hit") {
		t.Fatalf("Cache-Status %q", cs)
	}
	if n > storeAllocs {
		t.Fatalf("a cache hit read from the store allocates %.2f times, the store's Get %.2f: the engine adds %.2f", n, storeAllocs, n-storeAllocs)
	}
	t.Logf("a memory cache hit read from the store allocates %.0f times, all in the store's Get", n)
	// A conditional hit (a 304) allocates nothing either, also when it is
	// the first hit of a hot copy (which a full answer would decode).
	cond := &fasthttp.Request{}
	tmpl.CopyTo(cond)
	cond.Header.Set("If-None-Match", `"x"`)
	n = testing.AllocsPerRun(50, func() { // 50 s more: the entry stays fresh
		clock = clock.Add(time.Duration(hotHold)) // a new hot copy each time
		proxiedGET(e, ctx, cond)                  // read from the store
		proxiedGET(e, ctx, cond)                  // the copy's first hit
	})
	if ctx.Response.StatusCode() != fasthttp.StatusNotModified {
		t.Fatalf("conditional GET: %d", ctx.Response.StatusCode())
	}
	if n > storeAllocs {
		t.Fatalf("a store read and a hot copy's first hit, both 304s, allocate %.2f times, the store's Get %.2f", n, storeAllocs)
	}
}

// With the access log on but sampled out (a rule keeping none of
// Vkp.Access), and the metrics counting, a proxied GET still allocates
// nothing: the sampler decides before the line is built.
func TestProxiedGETSampledOutAllocatesNothing(t *testing.T) {
	body := make([]byte, 128)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	s := NewSampler(SampleRandom)
	var sink bytes.Buffer
	log := slog.New(NewSamplingHandler(slog.NewJSONHandler(&sink, nil), s))
	cfg := mustConfig(t, oneRoute("", origin))
	cfg.LogRules = []LogRule{{Category: CatAccess, Probability: 0}}
	e, err := New(cfg, Options{Logger: log, AccessLog: true, Sampler: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeEngine(e) })
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl)
	if n := testing.AllocsPerRun(500, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Fatalf("a proxied GET with metrics and a sampled-out access log allocates %.2f times", n)
	}
	if sink.Len() != 0 {
		t.Fatalf("sampled-out lines written: %s", sink.String())
	}
	var m bytes.Buffer
	e.WriteMetrics(&m)
	if !strings.Contains(m.String(), `vkp_requests_total{route="r",code="2xx"} 502`) {
		t.Fatalf("metrics did not count the requests:\n%s", m.String())
	}
}

// A written access line allocates little: its fields go as one inline
// group from pooled scratch (a record with more than five attributes
// allocated 770 bytes), method and path are not copied. What is left: the
// client address's text and slog's own.
func TestAccessLineAllocations(t *testing.T) {
	body := make([]byte, 128)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	log := slog.New(NewSamplingHandler(slog.NewJSONHandler(io.Discard, nil), NewSampler(SampleNone)))
	e := mustEngine(t, oneRoute("", origin), Options{Logger: log, AccessLog: true})
	ctx, tmpl := newProxyCtx()
	tmpl.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	proxiedGET(e, ctx, tmpl)
	if n := testing.AllocsPerRun(300, func() { proxiedGET(e, ctx, tmpl) }); n > 3 {
		t.Fatalf("a proxied GET with its access line allocates %.2f times, want at most 3", n)
	}
}

// The access line's fields are at the top of the JSON line (the group
// they travel in has no key).
func TestAccessLineFieldsInline(t *testing.T) {
	body := make([]byte, 128)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	var sink bytes.Buffer
	log := slog.New(NewSamplingHandler(slog.NewJSONHandler(&sink, nil), NewSampler(SampleNone)))
	e := mustEngine(t, oneRoute("", origin), Options{Logger: log, AccessLog: true})
	ctx, tmpl := newProxyCtx()
	tmpl.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	proxiedGET(e, ctx, tmpl)
	for _, want := range []string{`"msg":"request"`, `"category":"Vkp.Access"`, `"method":"GET"`, `"path":"/api/items"`,
		`"status":200`, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`, `"event_id":1`} {
		if !strings.Contains(sink.String(), want) {
			t.Fatalf("access line %s lacks %s", sink.String(), want)
		}
	}
}
