package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// testCORSOrigin is an origin server that records the methods it gets and
// answers 200 "ok" with the header lines a test gives it.
type testCORSOrigin struct {
	mu      sync.Mutex
	methods []string
}

func (o *testCORSOrigin) start(t *testing.T, lines []string) string {
	return startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		o.mu.Lock()
		o.methods = append(o.methods, string(ctx.Method()))
		o.mu.Unlock()
		for _, l := range lines {
			k, v, _ := strings.Cut(l, ": ")
			ctx.Response.Header.Add(k, v)
		}
		ctx.SetBodyString("ok")
	})
}

func (o *testCORSOrigin) seen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.methods...)
}

// inmemRouteEngine is inmemEngine with route Metadata.
func inmemRouteEngine(t testing.TB, meta string, origin fasthttp.RequestHandler) *Engine {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: origin}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { ln.Close() })
	return mustEngine(t, oneRoute(`, "Metadata": {`+meta+`}`, "origin.test:80"),
		Options{Dial: func(string) (net.Conn, error) { return ln.Dial() }})
}

// corsConfig is one route r (any host and path, plus match) on cluster c.
func corsConfig(match, meta, addr string) string {
	return `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "c", "Match": {"Paths": ["*"]` + match + `}, "Metadata": {` + meta + `}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://` + addr + `"}]}}}}`
}

// fieldLines returns a response field's lines joined with " | ", or
// "<none>".
func fieldLines(h *fasthttp.ResponseHeader, k string) string {
	all := h.PeekAll(k)
	if len(all) == 0 {
		return "<none>"
	}
	var s []string
	for _, v := range all {
		s = append(s, string(v))
	}
	return strings.Join(s, " | ")
}

const (
	corsList     = `"Access-Control-Allow-Origin": "https://a.example, https://b.example"`
	corsRegex    = `"Access-Control-Allow-Origin-Regex": "https://.*\\.a\\.com"`
	corsStarMeta = `"Access-Control-Allow-Origin": "*"`
)

var corsNames = []string{hdrACAO, hdrACAC, hdrACAM, hdrACAH, hdrACMA, hdrACEH}

// without returns the CORS field names but the given ones.
func without(keep ...string) []string {
	var out []string
	for _, n := range corsNames {
		kept := false
		for _, k := range keep {
			kept = kept || k == n
		}
		if !kept {
			out = append(out, n)
		}
	}
	return out
}

func TestCORS(t *testing.T) {
	type tc struct {
		name   string
		match  string   // extra members of Match
		meta   string   // route Metadata members
		upHdr  []string // lines the origin adds to its answer
		dead   bool     // the destination refuses connections
		method string
		hdr    []string // request header pairs
		status int      // default 200
		want   []string // "Name: line | line", exactly; "Name: <none>" for absent
		none   []string // names that must be absent
		up     string   // the method the origin must have seen; "" : no request reached it
	}
	pre := func(origin, method string, hdr ...string) []string {
		return append([]string{"Origin", origin, hdrACRM, method}, hdr...)
	}
	cases := []tc{
		{name: "listed origin, GET", meta: corsList, method: "GET", hdr: []string{"Origin", "https://a.example"},
			want: []string{"Access-Control-Allow-Origin: https://a.example", "Vary: Origin"}, none: without(hdrACAO), up: "GET"},
		{name: "listed origin in another case: the request's value is echoed", meta: corsList, method: "GET",
			hdr:  []string{"Origin", "HTTPS://B.Example"},
			want: []string{"Access-Control-Allow-Origin: HTTPS://B.Example", "Vary: Origin"}, up: "GET"},
		{name: "unlisted origin: forwarded, no CORS fields", meta: corsList, method: "GET", hdr: []string{"Origin", "https://c.example"},
			want: []string{"Vary: Origin"}, none: corsNames, up: "GET"},
		{name: "a listed origin's prefix is not it", meta: corsList, method: "GET", hdr: []string{"Origin", "https://a.example.evil.net"},
			none: corsNames, up: "GET"},
		{name: "no Origin: no CORS fields, still Vary", meta: corsList, method: "GET",
			want: []string{"Vary: Origin"}, none: corsNames, up: "GET"},
		{name: "star, no Origin: the same answer for everyone", meta: corsStarMeta, method: "GET",
			want: []string{"Access-Control-Allow-Origin: *", "Vary: <none>"}, up: "GET"},
		{name: "star with Origin", meta: corsStarMeta, method: "GET", hdr: []string{"Origin", "https://x.example"},
			want: []string{"Access-Control-Allow-Origin: *", "Vary: <none>"}, none: without(hdrACAO), up: "GET"},
		{name: "credentials and exposed headers", meta: corsList + `, "Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers": "X-Total , x-page", "Access-Control-Max-Age": "60"`,
			method: "GET", hdr: []string{"Origin", "https://b.example"},
			want: []string{"Access-Control-Allow-Origin: https://b.example", "Access-Control-Allow-Credentials: true",
				"Access-Control-Expose-Headers: X-Total, x-page", "Vary: Origin"},
			none: []string{hdrACAM, hdrACAH, hdrACMA}, up: "GET"},
		{name: "credentials false sends nothing", meta: corsList + `, "Access-Control-Allow-Credentials": "False"`,
			method: "GET", hdr: []string{"Origin", "https://b.example"}, none: []string{hdrACAC}, up: "GET"},
		{name: "star exposes headers", meta: corsStarMeta + `, "Access-Control-Expose-Headers": "*"`, method: "GET",
			want: []string{"Access-Control-Expose-Headers: *"}, up: "GET"},

		{name: "preflight, configured", method: "OPTIONS",
			meta: corsList + `, "Access-Control-Allow-Methods": "GET, post,PUT", "Access-Control-Allow-Headers": "X-A, Content-Type",
			"Access-Control-Max-Age": "600", "Access-Control-Allow-Credentials": "true", "Access-Control-Expose-Headers": "X-Total"`,
			hdr: pre("https://a.example", "PUT", hdrACRH, "x-b"), status: 204,
			want: []string{"Access-Control-Allow-Origin: https://a.example", "Access-Control-Allow-Methods: GET, POST, PUT",
				"Access-Control-Allow-Headers: X-A, Content-Type", "Access-Control-Max-Age: 600",
				"Access-Control-Allow-Credentials: true", "Vary: Origin"},
			none: []string{hdrACEH}},
		{name: "JSON booleans and numbers are read as VKProxy writes them", method: "OPTIONS",
			meta: corsList + `, "Access-Control-Allow-Credentials": true, "Access-Control-Max-Age": 600`,
			hdr:  pre("https://a.example", "PUT"), status: 204,
			want: []string{"Access-Control-Allow-Credentials: true", "Access-Control-Max-Age: 600"}},
		{name: "preflight echoes the method and headers when they are not configured", meta: corsList, method: "OPTIONS",
			hdr: pre("https://a.example", "PATCH", hdrACRH, "x-a, x-b"), status: 204,
			want: []string{"Access-Control-Allow-Origin: https://a.example", "Access-Control-Allow-Methods: PATCH",
				"Access-Control-Allow-Headers: x-a, x-b",
				"Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
			none: []string{hdrACMA, hdrACAC}},
		{name: "preflight echoes for \"*\" methods and headers (valid with credentials too)", method: "OPTIONS",
			meta: corsList + `, "Access-Control-Allow-Methods": "*", "Access-Control-Allow-Headers": "*", "Access-Control-Allow-Credentials": "true"`,
			hdr:  pre("https://a.example", "DELETE", hdrACRH, "authorization"), status: 204,
			want: []string{"Access-Control-Allow-Methods: DELETE", "Access-Control-Allow-Headers: authorization", "Access-Control-Allow-Credentials: true"}},
		{name: "preflight without requested headers gets no Allow-Headers", meta: corsList, method: "OPTIONS",
			hdr: pre("https://a.example", "PUT"), status: 204, want: []string{"Access-Control-Allow-Methods: PUT"}, none: []string{hdrACAH}},
		{name: "preflight, star (the seed's route)", meta: corsStarMeta + `, "Access-Control-Allow-Methods": "POST,PUT"`, method: "OPTIONS",
			hdr: pre("https://x.example", "PUT"), status: 204,
			want: []string{"Access-Control-Allow-Origin: *", "Access-Control-Allow-Methods: POST, PUT", "Vary: Access-Control-Request-Headers"}},
		{name: "preflight from an unlisted origin: 204 without CORS fields", meta: corsList + `, "Access-Control-Max-Age": "600"`,
			method: "OPTIONS", hdr: pre("https://c.example", "PUT", hdrACRH, "x-a"), status: 204, none: corsNames},
		{name: "preflight on a GET-only route", match: `, "Methods": ["GET"]`, meta: corsList, method: "OPTIONS",
			hdr: pre("https://a.example", "GET"), status: 204, want: []string{"Access-Control-Allow-Origin: https://a.example"}},
		{name: "preflight on a route whose Statement wants GET", match: `, "Statement": "Method = 'GET'"`, meta: corsList, method: "OPTIONS",
			hdr: pre("https://a.example", "GET"), status: 204, want: []string{"Access-Control-Allow-Origin: https://a.example"}},
		{name: "preflight for a method no route takes", match: `, "Methods": ["GET"]`, meta: corsList, method: "OPTIONS",
			hdr: pre("https://a.example", "DELETE"), status: 404, none: corsNames},
		{name: "OPTIONS without Access-Control-Request-Method is forwarded", meta: corsList, method: "OPTIONS",
			hdr: []string{"Origin", "https://a.example"}, want: []string{"Access-Control-Allow-Origin: https://a.example"}, up: "OPTIONS"},
		{name: "OPTIONS without Origin is forwarded", meta: corsList, method: "OPTIONS",
			hdr: []string{hdrACRM, "PUT"}, none: corsNames, up: "OPTIONS"},
		{name: "preflight on a route without CORS is forwarded", meta: `"mine": "x"`, method: "OPTIONS",
			hdr: pre("https://a.example", "PUT"), upHdr: []string{"Access-Control-Allow-Origin: https://up.example"},
			want: []string{"Access-Control-Allow-Origin: https://up.example"}, up: "OPTIONS"},
		{name: "preflight on a GET-only route without CORS is forwarded", match: `, "Methods": ["GET"]`, meta: `"mine": "x"`,
			method: "OPTIONS", hdr: pre("https://a.example", "GET"), up: "OPTIONS"},

		{name: "regex: a matching origin", meta: corsRegex, method: "GET", hdr: []string{"Origin", "https://x.a.com"},
			want: []string{"Access-Control-Allow-Origin: https://x.a.com", "Vary: Origin"}, up: "GET"},
		{name: "regex: any case", meta: corsRegex, method: "GET", hdr: []string{"Origin", "HTTPS://X.A.COM"},
			want: []string{"Access-Control-Allow-Origin: HTTPS://X.A.COM"}, up: "GET"},
		{name: "regex: anchored at the end (VKProxy accepts this)", meta: corsRegex, method: "GET",
			hdr: []string{"Origin", "https://x.a.com.evil.net"}, want: []string{"Vary: Origin"}, none: corsNames, up: "GET"},
		{name: "regex: anchored at the start", meta: corsRegex, method: "GET",
			hdr: []string{"Origin", "http://evil.net/https://x.a.com"}, none: corsNames, up: "GET"},
		{name: "regex: preflight from a non-matching origin", meta: corsRegex, method: "OPTIONS",
			hdr: pre("https://x.a.com.evil.net", "PUT"), status: 204, none: corsNames},
		{name: "regex and list: the list", meta: corsRegex + `, "Access-Control-Allow-Origin": "https://b.example"`, method: "GET",
			hdr: []string{"Origin", "https://b.example"}, want: []string{"Access-Control-Allow-Origin: https://b.example"}, up: "GET"},
		{name: "regex and list: the regex", meta: corsRegex + `, "Access-Control-Allow-Origin": "https://b.example"`, method: "GET",
			hdr: []string{"Origin", "https://y.a.com"}, want: []string{"Access-Control-Allow-Origin: https://y.a.com"}, up: "GET"},

		{name: "Vary merged into the origin's", meta: corsList, upHdr: []string{"Vary: Accept-Encoding"}, method: "GET",
			hdr: []string{"Origin", "https://a.example"}, want: []string{"Vary: Accept-Encoding, Origin"}, up: "GET"},
		{name: "Vary already naming Origin is kept", meta: corsList, upHdr: []string{"Vary: origin, Accept"}, method: "GET",
			want: []string{"Vary: origin, Accept"}, up: "GET"},
		{name: "Vary: * is kept", meta: corsList, upHdr: []string{"Vary: *"}, method: "GET", want: []string{"Vary: *"}, up: "GET"},
		{name: "Vary on two lines gets a third", meta: corsList, upHdr: []string{"Vary: Accept", "Vary: Accept-Language"}, method: "GET",
			want: []string{"Vary: Accept | Accept-Language | Origin"}, up: "GET"},
		{name: "star does not touch the origin's Vary", meta: corsStarMeta, upHdr: []string{"Vary: Accept"}, method: "GET",
			want: []string{"Vary: Accept"}, up: "GET"},

		{name: "the origin's CORS fields are replaced, other fields kept in order", meta: corsList + `, "Access-Control-Expose-Headers": "X-Mine"`,
			upHdr: []string{"Link: <a>", "Access-Control-Allow-Origin: *", "Access-Control-Allow-Credentials: true",
				"Access-Control-Allow-Methods: GET", "Link: <b>", "Access-Control-Expose-Headers: X-Up",
				"Access-Control-Max-Age: 5", "Access-Control-Allow-Origin: https://up.example", "Link: <c>", "X-Last: 1"},
			method: "GET", hdr: []string{"Origin", "https://a.example"},
			want: []string{"Access-Control-Allow-Origin: https://a.example", "Access-Control-Expose-Headers: X-Mine",
				"Link: <a> | <b> | <c>", "X-Last: 1"},
			none: []string{hdrACAC, hdrACAM, hdrACMA}, up: "GET"},
		{name: "the origin's CORS fields are removed for an unlisted origin", meta: corsList,
			upHdr:  []string{"Access-Control-Allow-Origin: *", "Access-Control-Allow-Private-Network: true", "X-Last: 1"},
			method: "GET", hdr: []string{"Origin", "https://c.example"},
			want: []string{"Access-Control-Allow-Private-Network: <none>", "X-Last: 1"}, none: corsNames, up: "GET"},
		{name: "a route without CORS passes the origin's", meta: `"mine": "x"`, upHdr: []string{"Access-Control-Allow-Origin: *"},
			method: "GET", hdr: []string{"Origin", "https://c.example"},
			want: []string{"Access-Control-Allow-Origin: *", "Vary: <none>"}, up: "GET"},
		{name: "vkp's own error answers get them too", meta: corsList, dead: true, method: "GET",
			hdr: []string{"Origin", "https://a.example"}, status: 502,
			want: []string{"Access-Control-Allow-Origin: https://a.example", "Vary: Origin"}},
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "HEAD"} {
		cases = append(cases, tc{name: "actual " + m, meta: corsList, method: m, hdr: []string{"Origin", "https://a.example"},
			want: []string{"Access-Control-Allow-Origin: https://a.example", "Vary: Origin"}, up: m})
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each case has its own servers; most of their time is shutting down
			var o testCORSOrigin
			addr := deadAddr(t)
			if !tt.dead {
				addr = o.start(t, tt.upHdr)
			}
			e := mustEngine(t, corsConfig(tt.match, tt.meta, addr), Options{})
			c, _ := serveEngine(t, e)
			var body []byte
			if tt.method == "POST" || tt.method == "PUT" || tt.method == "PATCH" {
				body = []byte("data")
			}
			resp := do(t, c, tt.method, "/p", body, tt.hdr...)
			want := tt.status
			if want == 0 {
				want = 200
			}
			if resp.StatusCode() != want {
				t.Errorf("status %d, want %d", resp.StatusCode(), want)
			}
			for _, w := range tt.want {
				k, v, _ := strings.Cut(w, ": ")
				if got := fieldLines(&resp.Header, k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.none {
				if v := resp.Header.Peek(k); v != nil {
					t.Errorf("%s: %q, want none", k, v)
				}
			}
			for _, k := range corsNames {
				if n := len(resp.Header.PeekAll(k)); n > 1 {
					t.Errorf("%s on %d lines", k, n)
				}
			}
			seen := o.seen()
			switch {
			case tt.up == "" && len(seen) > 0:
				t.Errorf("the origin got %v, want nothing", seen)
			case tt.up != "" && (len(seen) != 1 || seen[0] != tt.up):
				t.Errorf("the origin got %v, want one %s", seen, tt.up)
			}
		})
	}
}

// A cached CORS route: the entry is the origin's answer, without the CORS
// fields vkp adds, so each origin gets its own from a hit; a preflight
// never reaches the cache.
func TestCORSWithCache(t *testing.T) {
	var o testCORSOrigin
	addr := o.start(t, []string{"Cache-Control: max-age=600", "Access-Control-Allow-Origin: https://up.example"})
	e := mustEngine(t, corsConfig("", `"Cache": "Memory", `+corsList, addr), Options{})
	c, _ := serveEngine(t, e)
	for i, s := range []struct{ origin, cs, acao string }{
		{"https://a.example", "fwd=uri-miss; stored", "https://a.example"},
		{"https://b.example", "hit", "https://b.example"},
		{"https://c.example", "hit", "<none>"},
		{"", "hit", "<none>"},
		{"https://a.example", "hit", "https://a.example"},
	} {
		var hdr []string
		if s.origin != "" {
			hdr = []string{"Origin", s.origin}
		}
		resp := do(t, c, "GET", "/p", nil, append(hdr, "Host", "app.test")...)
		if cs := string(resp.Header.Peek("Cache-Status")); !strings.Contains(cs, s.cs) {
			t.Errorf("request %d (%s): Cache-Status %q, want %q", i, s.origin, cs, s.cs)
		}
		if got := fieldLines(&resp.Header, hdrACAO); got != s.acao {
			t.Errorf("request %d (%s): Allow-Origin %q, want %q", i, s.origin, got, s.acao)
		}
		if got := fieldLines(&resp.Header, "Vary"); got != "Origin" {
			t.Errorf("request %d (%s): Vary %q, want Origin", i, s.origin, got)
		}
	}
	if n := len(o.seen()); n != 1 {
		t.Fatalf("the origin got %d requests, want 1", n)
	}
	// The stored entry is the origin's answer: its own Allow-Origin, none
	// of vkp's, and no Vary vkp added.
	st, _ := e.reg.stores.open("memory")
	raw, err := st.Get(context.Background(), []byte("r#GET app.test/p"))
	if err != nil {
		t.Fatalf("entry: %v", err)
	}
	ent, err := decodeEntry(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(ent.field(hdrACAO)); got != "https://up.example" {
		t.Errorf("stored Allow-Origin %q, want the origin's", got)
	}
	if v := ent.field("Vary"); v != nil || strings.Contains(string(ent.hdrs), "a.example") {
		t.Errorf("the entry carries vkp's CORS fields: %q", ent.hdrs)
	}
	// A preflight is answered before the cache: no Cache-Status, no
	// request upstream.
	resp := do(t, c, "OPTIONS", "/p", nil, "Host", "app.test", "Origin", "https://b.example", hdrACRM, "PUT")
	if resp.StatusCode() != 204 || resp.Header.Peek("Cache-Status") != nil || string(resp.Header.Peek(hdrACAO)) != "https://b.example" {
		t.Errorf("preflight: %d, Cache-Status %q, Allow-Origin %q", resp.StatusCode(), resp.Header.Peek("Cache-Status"), resp.Header.Peek(hdrACAO))
	}
	if n := len(o.seen()); n != 1 {
		t.Errorf("the origin got %d requests after the preflight, want 1", n)
	}
}

// A preflight is not mirrored (it never reaches the shadow or the origin);
// the actual request is, with its CORS fields set on the main answer only.
func TestCORSPreflightNotMirrored(t *testing.T) {
	sh := newShadow()
	var o testCORSOrigin
	e := mustEngine(t, mirrorConfig(o.start(t, nil), `"MirrorCluster": "shadow0", `+corsList, startOrigin(t, sh.handler(0))), Options{})
	c, _ := serveEngine(t, e)
	resp := do(t, c, "OPTIONS", "/p", nil, "Origin", "https://a.example", hdrACRM, "PUT")
	if resp.StatusCode() != 204 || e.MirrorStats().Due != 0 {
		t.Fatalf("preflight: status %d, mirror copies due %d", resp.StatusCode(), e.MirrorStats().Due)
	}
	resp = do(t, c, "PUT", "/p", []byte("x"), "Origin", "https://a.example")
	if resp.StatusCode() != 200 || string(resp.Header.Peek(hdrACAO)) != "https://a.example" {
		t.Fatalf("PUT: %d, Allow-Origin %q", resp.StatusCode(), resp.Header.Peek(hdrACAO))
	}
	st := waitMirror(t, e, 5e9)
	if st.Due != 1 || st.Sent != 1 || len(o.seen()) != 1 {
		t.Fatalf("mirror %+v, origin %v; want the PUT alone, once each", st, o.seen())
	}
}

// Preflights are routed as the method they ask about, then, when no route
// takes it, as OPTIONS; other requests as they are.
func TestPreflightRouting(t *testing.T) {
	rt := mustEngine(t, `{"ReverseProxy": {
	  "Routes": {
	    "get":     {"ClusterId": "c", "Match": {"Paths": ["/x"], "Methods": ["GET"]}, "Metadata": {`+corsList+`}},
	    "put":     {"ClusterId": "c", "Match": {"Paths": ["/x"], "Statement": "Method = 'PUT'"}},
	    "options": {"ClusterId": "c", "Order": 5, "Match": {"Paths": ["/x"], "Methods": ["OPTIONS"]}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`, Options{}).Current().Router
	for _, tt := range []struct {
		name  string
		ctx   *fasthttp.RequestCtx
		route string
	}{
		{"preflight for GET", reqCtx("OPTIONS", "h", "/x", "Origin", "https://a.example", hdrACRM, "GET"), "get"},
		{"preflight for get (methods match without regard to case)", reqCtx("OPTIONS", "h", "/x", "Origin", "https://a.example", hdrACRM, "get"), "get"},
		{"preflight for PUT (the Statement sees PUT)", reqCtx("OPTIONS", "h", "/x", "Origin", "https://a.example", hdrACRM, "PUT"), "put"},
		{"preflight for DELETE: OPTIONS", reqCtx("OPTIONS", "h", "/x", "Origin", "https://a.example", hdrACRM, "DELETE"), "options"},
		{"no Origin: OPTIONS", reqCtx("OPTIONS", "h", "/x", hdrACRM, "GET"), "options"},
		{"a requested method that is not a token: OPTIONS", reqCtx("OPTIONS", "h", "/x", "Origin", "https://a.example", hdrACRM, "G T"), "options"},
		{"GET with the preflight fields: GET", reqCtx("GET", "h", "/x", "Origin", "https://a.example", hdrACRM, "PUT"), "get"},
	} {
		r := rt.Match(tt.ctx)
		if r == nil || r.ID != tt.route {
			t.Errorf("%s: route %v, want %s", tt.name, r, tt.route)
		}
		if m := string(tt.ctx.Method()); m != "OPTIONS" && m != "GET" {
			t.Errorf("%s: the method is %q after Match", tt.name, m)
		}
	}
}

func TestCORSConfigErrors(t *testing.T) {
	for _, tc := range []struct{ meta, want string }{
		{`"Access-Control-Allow-Origin": ""`, `Metadata.Access-Control-Allow-Origin: empty`},
		{`"Access-Control-Allow-Origin": "*, https://a.example"`, `Metadata.Access-Control-Allow-Origin: "*, https://a.example": "*" allows every origin and stands alone`},
		{`"Access-Control-Allow-Origin": "https://a.example/"`, `"https://a.example/": an origin has no path, query or fragment: write https://a.example`},
		{`"Access-Control-Allow-Origin": "https://*.a.example"`, `wildcards are not origins: use Access-Control-Allow-Origin-Regex`},
		{`"Access-Control-Allow-Origin": "a.example"`, `"a.example": not an origin`},
		{`"Access-Control-Allow-Origin": "https://a b"`, `"https://a b": not an origin`},
		{`"Access-Control-Allow-Origin-Regex": "https://(a"`, `Metadata.Access-Control-Allow-Origin-Regex: error parsing regexp`},
		{`"Access-Control-Allow-Origin-Regex": " "`, `Metadata.Access-Control-Allow-Origin-Regex: empty`},
		{`"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Origin-Regex": ".*"`, `Metadata.Access-Control-Allow-Origin-Regex: Access-Control-Allow-Origin is "*"`},
		{corsStarMeta + `, "Access-Control-Allow-Credentials": "true"`, `Metadata.Access-Control-Allow-Credentials: true with Access-Control-Allow-Origin "*": browsers refuse`},
		{corsList + `, "Access-Control-Allow-Credentials": "yes"`, `Metadata.Access-Control-Allow-Credentials: "yes": want true or false`},
		{corsList + `, "Access-Control-Allow-Credentials": "1"`, `Metadata.Access-Control-Allow-Credentials: "1": want true or false`},
		{corsList + `, "Access-Control-Max-Age": "-1"`, `Metadata.Access-Control-Max-Age: "-1": want a whole number of seconds, 0 or more`},
		{corsList + `, "Access-Control-Max-Age": "1.5"`, `Metadata.Access-Control-Max-Age: "1.5"`},
		{corsList + `, "Access-Control-Max-Age": "00:10:00"`, `Metadata.Access-Control-Max-Age: "00:10:00"`},
		{corsList + `, "Access-Control-Allow-Methods": "GET;POST"`, `Metadata.Access-Control-Allow-Methods: "GET;POST" is not a method`},
		{corsList + `, "Access-Control-Allow-Methods": "GET, PO ST"`, `"PO ST" is not a method`},
		{corsList + `, "Access-Control-Allow-Methods": " , "`, `Metadata.Access-Control-Allow-Methods: empty`},
		{corsList + `, "Access-Control-Allow-Methods": "*, GET"`, `Metadata.Access-Control-Allow-Methods: "*, GET": "*" stands alone`},
		{corsList + `, "Access-Control-Allow-Headers": "X-A, X:B"`, `Metadata.Access-Control-Allow-Headers: "X:B" is not a header name`},
		{corsList + `, "Access-Control-Expose-Headers": "X A"`, `Metadata.Access-Control-Expose-Headers: "X A" is not a header name`},
		{corsList + `, "Access-Control-Allow-Credentials": "true", "Access-Control-Expose-Headers": "*"`,
			`Metadata.Access-Control-Expose-Headers: "*" with Access-Control-Allow-Credentials true`},
	} {
		_, err := ParseConfig([]byte(oneRoute(`, "Metadata": {`+tc.meta+`}`, "127.0.0.1:1")))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a problem containing %q", tc.meta, err, tc.want)
		}
	}
}

func TestCORSConfigWarnings(t *testing.T) {
	cfg := mustConfig(t, `{"ReverseProxy": {"Routes": {
	    "on":  {"ClusterId": "c", "Metadata": {`+corsList+`, "Access-Control-Max-Age": "5"}},
	    "off": {"ClusterId": "c", "Metadata": {"Access-Control-Allow-Methods": "PUT", "access-control-max-age": "5"}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "a:1"}]}}}}`)
	all := strings.Join(cfg.Warnings, "\n")
	for _, w := range []string{
		"ReverseProxy.Routes.off.Metadata.Access-Control-Allow-Methods: has no effect: the route has no Access-Control-Allow-Origin",
		"ReverseProxy.Routes.off.Metadata.Access-Control-Max-Age: has no effect",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings %q lack %q", all, w)
		}
	}
	if strings.Contains(all, "not implemented") || strings.Contains(all, "Routes.on.Metadata") {
		t.Errorf("CORS keys are implemented: %q", all)
	}
}

// The CORS settings are a parser of what users write: no input panics,
// what loads sends only valid header values, and the answers keep the
// contract (Allow-Origin is "*" or the request's Origin, only when
// allowed).
func FuzzCORSConfig(f *testing.F) {
	f.Add("https://a.example, https://b.example", "", "GET, PUT", "X-A", "true", "600", "X-Total", "https://a.example")
	f.Add("*", "", "*", "*", "false", "0", "*", "https://x.example")
	f.Add("", `https://.*\.a\.com`, "", "", "", "", "", "https://x.a.com.evil.net")
	f.Add("null", "(", "GET;POST", "X:A", "yes", "-1", "X A", "null")
	f.Fuzz(func(t *testing.T, origin, re, methods, headers, creds, maxAge, expose, reqOrigin string) {
		meta := map[string]string{}
		for k, v := range map[string]string{hdrACAO: origin, "Access-Control-Allow-Origin-Regex": re, hdrACAM: methods,
			hdrACAH: headers, hdrACAC: creds, hdrACMA: maxAge, hdrACEH: expose} {
			if v != "" {
				meta[k] = v
			}
		}
		mj, err := json.Marshal(meta)
		if err != nil {
			return
		}
		cfg, err := ParseConfig([]byte(oneRoute(`, "Metadata": `+string(mj), "127.0.0.1:1")))
		if err != nil {
			return
		}
		c := &compiler{cfg: cfg}
		rc := c.compileCORS(&Route{ID: "r", cfg: cfg.Routes[0]})
		if len(c.errs) > 0 {
			t.Fatalf("the config loaded, its CORS did not: %v", c.errs)
		}
		if rc == nil {
			return
		}
		for _, v := range [][]byte{rc.methods, rc.headers, rc.maxAge, rc.expose, rc.preVary} {
			if bytes.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("header value %q", v)
			}
		}
		for _, preflight := range []bool{false, true} {
			ctx := reqCtx("GET", "h", "/", "Origin", reqOrigin)
			if preflight {
				ctx = reqCtx("OPTIONS", "h", "/", "Origin", reqOrigin, hdrACRM, "PUT")
			}
			sent := ctx.Request.Header.Peek("Origin")
			if m := preflightMethod(&ctx.Request.Header); m != nil {
				rc.preflight(ctx, m)
			} else {
				rc.actual(ctx)
			}
			acao := ctx.Response.Header.Peek(hdrACAO)
			switch {
			case acao == nil:
				if rc.allowed(sent) && (len(sent) > 0 || rc.star) {
					t.Fatalf("origin %q allowed, no Allow-Origin", sent)
				}
			case rc.star && string(acao) != "*", !rc.star && !bytes.Equal(acao, sent), !rc.allowed(sent):
				t.Fatalf("Allow-Origin %q for Origin %q", acao, sent)
			}
		}
	})
}

// BenchmarkCORS is a GET through Engine.Handle, as BenchmarkProxiedGET,
// on a route without CORS and with it, and a preflight.
func BenchmarkCORS(b *testing.B) {
	body := make([]byte, 128)
	for _, bc := range []struct {
		name, meta string
		hdr        []string
	}{
		{"no CORS", `"mine": "x"`, []string{"Origin", "https://a.example"}},
		{"list", corsList, []string{"Origin", "https://b.example"}},
		{"regex", corsRegex, []string{"Origin", "https://x.a.com"}},
		{"star", corsStarMeta, []string{"Origin", "https://b.example"}},
		{"preflight", corsList, []string{"Origin", "https://b.example", hdrACRM, "PUT", hdrACRH, "x-a"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := inmemRouteEngine(b, bc.meta, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
			ctx, tmpl := newProxyCtx()
			for i := 0; i+1 < len(bc.hdr); i += 2 {
				tmpl.Header.Set(bc.hdr[i], bc.hdr[i+1])
			}
			if bc.name == "preflight" {
				tmpl.Header.SetMethod("OPTIONS")
			}
			b.ReportAllocs()
			for b.Loop() {
				proxiedGET(e, ctx, tmpl)
			}
		})
	}
}
