//go:build !race

package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// Requests through a CORS route allocate nothing: the header values are
// built at compile time, the Origin is compared in place, and Go's regexp
// matches []byte with a machine it keeps per Regexp (one goroutine here:
// concurrent matches may each make one, once).
func TestCORSAllocatesNothing(t *testing.T) {
	body := make([]byte, 128)
	for _, tt := range []struct {
		name, meta string
		upHdr      []string
		hdr        []string // request header pairs
		method     string
		status     int
		want       string // "Name: value" the response must have
	}{
		{name: "actual GET, literal list", meta: corsList + `, "Access-Control-Allow-Credentials": "true", "Access-Control-Expose-Headers": "X-Total"`,
			hdr: []string{"Origin", "https://b.example"}, want: "Access-Control-Allow-Origin: https://b.example"},
		{name: "actual GET, unlisted origin", meta: corsList, hdr: []string{"Origin", "https://c.example"}, want: "Vary: Origin"},
		{name: "actual GET, no Origin", meta: corsList, want: "Vary: Origin"},
		{name: "actual GET, star", meta: corsStarMeta, want: "Access-Control-Allow-Origin: *"},
		{name: "actual POST, literal list", meta: corsList, method: "POST", hdr: []string{"Origin", "https://a.example"},
			want: "Access-Control-Allow-Origin: https://a.example"},
		{name: "actual GET, Vary merged", meta: corsList, upHdr: []string{"Vary: Accept-Encoding"},
			hdr: []string{"Origin", "https://a.example"}, want: "Vary: Accept-Encoding, Origin"},
		{name: "actual GET, regex", meta: corsRegex, hdr: []string{"Origin", "https://x.a.com"},
			want: "Access-Control-Allow-Origin: https://x.a.com"},
		{name: "actual GET, the origin's CORS fields replaced", meta: corsList,
			upHdr: []string{"Link: <a>", "Access-Control-Allow-Origin: *", "Link: <b>", "Access-Control-Allow-Credentials: true"},
			hdr:   []string{"Origin", "https://a.example"}, want: "Access-Control-Allow-Origin: https://a.example"},
		{name: "preflight", meta: corsList + `, "Access-Control-Allow-Methods": "GET, PUT", "Access-Control-Max-Age": "600"`,
			method: "OPTIONS", hdr: []string{"Origin", "https://a.example", hdrACRM, "PUT", hdrACRH, "x-a"}, status: 204,
			want: "Access-Control-Allow-Headers: x-a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := inmemRouteEngine(t, tt.meta, func(ctx *fasthttp.RequestCtx) {
				for _, l := range tt.upHdr {
					k, v, _ := strings.Cut(l, ": ")
					ctx.Response.Header.Add(k, v)
				}
				ctx.SetBody(body)
			})
			ctx, tmpl := newProxyCtx()
			if tt.method != "" {
				tmpl.Header.SetMethod(tt.method)
			}
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				tmpl.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			check := func(when string) {
				want := tt.status
				if want == 0 {
					want = 200
				}
				k, v, _ := strings.Cut(tt.want, ": ")
				if ctx.Response.StatusCode() != want || string(ctx.Response.Header.Peek(k)) != v {
					t.Fatalf("%s: status %d, %s %q; want %d, %q", when, ctx.Response.StatusCode(), k, ctx.Response.Header.Peek(k), want, v)
				}
			}
			proxiedGET(e, ctx, tmpl)
			check("first request")
			if n := testing.AllocsPerRun(300, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
				t.Errorf("allocates %.2f times", n)
			}
			check("after the runs")
		})
	}
}

// A preflight is routed by the method it asks about without allocating.
func TestPreflightMatchAllocatesNothing(t *testing.T) {
	rt := mustEngine(t, corsConfig(`, "Methods": ["GET"], "Statement": "Method = 'GET'"`, corsList, "127.0.0.1:1"), Options{}).Current().Router
	ctx := reqCtx("OPTIONS", "h", "/x", "Origin", "https://a.example", hdrACRM, "GET")
	if r := rt.Match(ctx); r == nil {
		t.Fatal("no route for the preflight")
	}
	if n := testing.AllocsPerRun(300, func() { rt.Match(ctx) }); n != 0 {
		t.Errorf("matching a preflight allocates %.2f times", n)
	}
}

// A cache hit on a CORS route allocates what the memory store's Get
// does, nothing more.
func TestCORSCacheHitAllocations(t *testing.T) {
	body := make([]byte, 4<<10)
	e := inmemRouteEngine(t, `"Cache": "Memory", `+corsList, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=600")
		ctx.SetBody(body)
	})
	ctx, tmpl := newProxyCtx()
	tmpl.Header.Set("Origin", "https://a.example")
	proxiedGET(e, ctx, tmpl)
	proxiedGET(e, ctx, tmpl)
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(cs, "vkp; hit") ||
		string(ctx.Response.Header.Peek(hdrACAO)) != "https://a.example" {
		t.Fatalf("second GET: Cache-Status %q, Allow-Origin %q", cs, ctx.Response.Header.Peek(hdrACAO))
	}
	st, _ := e.reg.stores.open("memory")
	key := []byte("r#GET api.example.com/api/items?id=42")
	storeAllocs := testing.AllocsPerRun(500, func() { st.Get(context.Background(), key) }) //nolint:errcheck
	n := testing.AllocsPerRun(500, func() { proxiedGET(e, ctx, tmpl) })
	if n > storeAllocs {
		t.Fatalf("a CORS cache hit allocates %.2f times, the store's Get %.2f: the engine adds %.2f", n, storeAllocs, n-storeAllocs)
	}
	t.Logf("a memory cache hit on a CORS route allocates %.0f times, all in the store's Get", n)
}
