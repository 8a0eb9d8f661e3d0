//go:build !race

package engine

import (
	"testing"

	"github.com/valyala/fasthttp"
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
		if n := testing.AllocsPerRun(200, func() { p.Pick(ctx, d) }); n != 0 {
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
