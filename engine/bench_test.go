package engine

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func BenchmarkRouteMatch(b *testing.B) {
	rt := mustEngine(b, precedenceConfig, Options{}).Current().Router
	ctx := reqCtx("GET", "other.net", "/a/b/x")
	b.ReportAllocs()
	for b.Loop() {
		if rt.Match(ctx) == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkRouteMatchStatement(b *testing.B) {
	rt := mustEngine(b, precedenceConfig, Options{}).Current().Router
	ctx := reqCtx("GET", "ab.io", "/", "x-env", "test")
	b.ReportAllocs()
	for b.Loop() {
		rt.Match(ctx)
	}
}

func BenchmarkPick(b *testing.B) {
	d := testDests(8)
	ctx := reqCtx("GET", "h", "/", "X-Forwarded-For", "10.1.2.3")
	for _, p := range []Picker{&RandomPicker{Rand: defaultIntN}, &RoundRobinPicker{}, LeastRequestsPicker{},
		&P2CPicker{Rand: defaultIntN}, &HashPicker{By: HashByHeader, Key: "X-Forwarded-For", Rand: defaultIntN}} {
		b.Run(fmtType(p), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(&ctx.Request, d)
			}
		})
	}
}

func fmtType(p Picker) string {
	switch p.(type) {
	case *RandomPicker:
		return "Random"
	case *RoundRobinPicker:
		return "RoundRobin"
	case LeastRequestsPicker:
		return "LeastRequests"
	case *P2CPicker:
		return "PowerOfTwoChoices"
	}
	return "Hash"
}

// BenchmarkProxiedGET is one GET through Engine.Handle to an origin on an
// in-memory connection: route match, pick, header rewrite, upstream
// round trip (origin's work included).
func BenchmarkProxiedGET(b *testing.B) {
	body := make([]byte, 128)
	e := inmemEngine(b, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	ctx, tmpl := newProxyCtx()
	b.ReportAllocs()
	for b.Loop() {
		proxiedGET(e, ctx, tmpl)
	}
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d", ctx.Response.StatusCode())
	}
}

// BenchmarkCacheHit is a 4 KiB memory-store hit through the handler.
func BenchmarkCacheHit(b *testing.B) {
	body := make([]byte, 4<<10)
	origin := startOrigin(b, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "public, max-age=600")
		ctx.SetBody(body)
	})
	e := mustEngine(b, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{})
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		proxiedGET(e, ctx, tmpl)
	}
}

// BenchmarkAccessLog is BenchmarkProxiedGET with the access log on, as
// serve writes it (JSON handler), to a discarding writer: what a line
// costs on top of the request.
func BenchmarkAccessLog(b *testing.B) {
	body := make([]byte, 128)
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go srv.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { ln.Close() })
	log := slog.New(NewSamplingHandler(slog.NewJSONHandler(io.Discard, nil), NewSampler(SampleNone)))
	e := mustEngine(b, oneRoute("", "origin.test:80"), Options{
		Dial: func(string) (net.Conn, error) { return ln.Dial() }, Logger: log, AccessLog: true,
	})
	ctx, tmpl := newProxyCtx()
	b.ReportAllocs()
	for b.Loop() {
		proxiedGET(e, ctx, tmpl)
	}
}
