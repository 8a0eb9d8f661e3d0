package engine

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// echoOrigin answers with what it received, in headers prefixed "Echo-".
func echoOrigin(ctx *fasthttp.RequestCtx) {
	r := &ctx.Request
	h := &ctx.Response.Header
	h.Set("Echo-Method", string(r.Header.Method()))
	h.Set("Echo-URI", string(r.RequestURI()))
	h.Set("Echo-Host", string(r.Header.Host()))
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Keep-Alive", "X-Hop", "Proxy-Authorization", "Te", "X-Custom", "Upgrade", "Connection"} {
		if v := r.Header.Peek(k); v != nil {
			h.Set("Echo-"+k, string(v))
		}
	}
	sum := sha256.Sum256(r.Body())
	h.Set("Echo-Body-Sha", string(appendHex(nil, sum[:])))
	h.Set("Echo-Body-Len", string(fasthttp.AppendUint(nil, len(r.Body()))))
	ctx.SetBodyString("origin says hi")
}

func TestForwardHeaders(t *testing.T) {
	origin := startOrigin(t, echoOrigin)
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	resp := do(t, c, "GET", "/p/a%20b?x=1&y=2", nil,
		"Host", "api.example.com:8080",
		"X-Forwarded-For", "10.0.0.1",
		"Connection", "keep-alive, X-Hop",
		"X-Hop", "secret", "Keep-Alive", "timeout=5", "Proxy-Authorization", "Basic x",
		"Te", "trailers", "X-Custom", "kept")
	h := &resp.Header
	checks := map[string]string{
		"Echo-Method":              "GET",
		"Echo-URI":                 "/p/a%20b?x=1&y=2",
		"Echo-Host":                origin, // the destination's authority, as in VKProxy
		"Echo-X-Forwarded-For":     "10.0.0.1, 127.0.0.1",
		"Echo-X-Forwarded-Proto":   "http",
		"Echo-X-Forwarded-Host":    "api.example.com:8080",
		"Echo-X-Custom":            "kept",
		"Echo-X-Hop":               "",
		"Echo-Keep-Alive":          "",
		"Echo-Proxy-Authorization": "",
		"Echo-Te":                  "",
		"Echo-Upgrade":             "",
	}
	for k, want := range checks {
		if got := string(h.Peek(k)); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if string(resp.Body()) != "origin says hi" || resp.StatusCode() != 200 {
		t.Fatalf("status %d body %q", resp.StatusCode(), resp.Body())
	}
}

// The client's Host goes upstream only when the route asks for it
// (RequestHeaderOriginalHost); X-Forwarded (Set, Remove, Off) replaces
// vkp's default handling of X-Forwarded-*.
func TestForwardTransforms(t *testing.T) {
	origin := startOrigin(t, echoOrigin)
	for _, tc := range []struct {
		transforms string
		want       map[string]string
	}{
		{`[{"RequestHeaderOriginalHost": "true"}]`, map[string]string{"Echo-Host": "api.example.com", "Echo-X-Forwarded-Host": "api.example.com",
			"Echo-X-Forwarded-For": "10.0.0.1, 127.0.0.1"}},
		{`[{"X-Forwarded": "Set"}]`, map[string]string{"Echo-Host": origin, "Echo-X-Forwarded-For": "127.0.0.1", "Echo-X-Forwarded-Proto": "http"}},
		{`[{"X-Forwarded": "Remove"}]`, map[string]string{"Echo-X-Forwarded-For": "", "Echo-X-Forwarded-Proto": "", "Echo-X-Forwarded-Host": ""}},
		{`[{"X-Forwarded": "Off"}]`, map[string]string{"Echo-X-Forwarded-For": "10.0.0.1", "Echo-X-Forwarded-Proto": "gopher", "Echo-X-Forwarded-Host": ""}},
		{`[{"X-Forwarded": "Set", "For": "Append"}]`, map[string]string{"Echo-X-Forwarded-For": "10.0.0.1, 127.0.0.1", "Echo-X-Forwarded-Proto": "http"}},
	} {
		t.Run(tc.transforms, func(t *testing.T) {
			c, _ := serveEngine(t, mustEngine(t, oneRoute(`, "Transforms": `+tc.transforms, origin), Options{}))
			resp := do(t, c, "GET", "/", nil, "Host", "api.example.com", "X-Forwarded-For", "10.0.0.1", "X-Forwarded-Proto", "gopher")
			for k, want := range tc.want {
				if got := string(resp.Header.Peek(k)); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestForwardResponseHopHeaders(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Connection", "X-Internal")
		ctx.Response.Header.Set("X-Internal", "1")
		ctx.Response.Header.Set("Keep-Alive", "timeout=1")
		ctx.Response.Header.Set("Proxy-Authenticate", "Basic")
		ctx.Response.Header.Set("X-Public", "yes")
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetStatusCode(201)
		ctx.SetBodyString(`{"ok":true}`)
	})
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	resp := do(t, c, "GET", "/", nil)
	h := &resp.Header
	for _, k := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate"} {
		if v := h.Peek(k); v != nil {
			t.Errorf("hop-by-hop response header %s = %q reached the client", k, v)
		}
	}
	if string(h.Peek("X-Public")) != "yes" || string(h.ContentType()) != "application/json" || resp.StatusCode() != 201 {
		t.Fatalf("response not passed through: %d %s", resp.StatusCode(), h.String())
	}
	if string(resp.Body()) != `{"ok":true}` {
		t.Fatalf("body %q", resp.Body())
	}
}

func TestForwardUpstreamCloseKeepsClientConnection(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetConnectionClose()
		ctx.SetBodyString("bye")
	})
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	resp := do(t, c, "GET", "/", nil)
	if resp.ConnectionClose() {
		t.Fatal("an upstream Connection: close was passed to the client")
	}
	if string(resp.Body()) != "bye" {
		t.Fatalf("body %q", resp.Body())
	}
}

func TestForwardDestinationHostAndBase(t *testing.T) {
	origin := startOrigin(t, echoOrigin)
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["*"], "Paths": ["*"]}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://` + origin + `/base/", "Host": "internal.svc"}]}}}}`
	c, _ := serveEngine(t, mustEngine(t, cfg, Options{}))
	resp := do(t, c, "GET", "/v1/items?id=7", nil, "Host", "public.example")
	if got := string(resp.Header.Peek("Echo-URI")); got != "/base/v1/items?id=7" {
		t.Errorf("upstream URI %q, want /base/v1/items?id=7", got)
	}
	if got := string(resp.Header.Peek("Echo-Host")); got != "internal.svc" {
		t.Errorf("upstream Host %q, want the destination's Host", got)
	}
	if got := string(resp.Header.Peek("Echo-X-Forwarded-Host")); got != "public.example" {
		t.Errorf("X-Forwarded-Host %q, want the client's Host", got)
	}
}

func TestForwardBodies(t *testing.T) {
	origin := startOrigin(t, echoOrigin)
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	body[12345] = 'Z'
	resp := do(t, c, "POST", "/upload", body)
	sum := sha256.Sum256(body)
	if got := string(resp.Header.Peek("Echo-Body-Sha")); got != string(appendHex(nil, sum[:])) {
		t.Fatalf("1 MiB body changed in transit (len %s)", resp.Header.Peek("Echo-Body-Len"))
	}
}

func TestForwardLargeResponse(t *testing.T) {
	payload := bytes.Repeat([]byte("vkp-"), 5<<18) // 5 MiB
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(payload) })
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	resp := do(t, c, "GET", "/big", nil)
	if !bytes.Equal(resp.Body(), payload) {
		t.Fatalf("5 MiB response: got %d bytes", len(resp.Body()))
	}
}

func TestErrorMapping(t *testing.T) {
	slow := startOrigin(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(600 * time.Millisecond) })
	ok := startOrigin(t, echoOrigin)
	tests := []struct {
		name   string
		cfg    string
		method string
		body   []byte
		host   string
		want   int
	}{
		{"dead destination → 502", oneRoute("", deadAddr(t)), "GET", nil, "x", 502},
		{"slow destination → 504", oneRoute(`, "Timeout": "00:00:00.2"`, slow), "GET", nil, "x", 504},
		{"no route → 404", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["only.this"], "Paths": ["*"]}}},
			"Clusters": {"c": {"Destinations": [{"Address": "` + ok + `"}]}}}}`, "GET", nil, "x", 404},
		{"body over limit → 413", oneRoute("", ok), "POST", make([]byte, 2048), "x", 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEngine(t, tt.cfg, Options{MaxRequestBodySize: 1024})
			c, _ := serveEngine(t, e)
			resp := do(t, c, tt.method, "/", tt.body, "Host", tt.host)
			if resp.StatusCode() != tt.want {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode(), tt.want, resp.Body())
			}
			if want := fasthttp.StatusMessage(tt.want) + "\n"; string(resp.Body()) != want {
				t.Fatalf("body %q, want %q", resp.Body(), want)
			}
		})
	}
}

func TestNoDestination503(t *testing.T) {
	e := mustEngine(t, oneRoute("", "127.0.0.1:1"), Options{})
	// All destinations unavailable (health checks will empty the list; here
	// the snapshot's cluster is emptied directly).
	e.Current().Routes[0].cluster.dests = nil
	ctx := reqCtx("GET", "x", "/")
	e.Handle(ctx)
	if ctx.Response.StatusCode() != 503 {
		t.Fatalf("status %d, want 503", ctx.Response.StatusCode())
	}
}

func TestNoRetryOfPost(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		// Close without answering: a failure after the request was sent.
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) { c.Close() })
	})
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	resp := do(t, c, "POST", "/pay", []byte("once"))
	if resp.StatusCode() != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode())
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("POST reached the origin %d times, want exactly 1", n)
	}
}

func TestStatusForErrors(t *testing.T) {
	for err, want := range map[error]int{
		ErrNoRoute: 404, ErrNoDestination: 503, fasthttp.ErrTimeout: 504, fasthttp.ErrDialTimeout: 504,
		fasthttp.ErrBodyTooLarge: 413, fasthttp.ErrConnectionClosed: 502,
	} {
		if got := statusFor(err); got != want {
			t.Errorf("statusFor(%v) = %d, want %d", err, got, want)
		}
	}
	if !strings.HasPrefix(ErrNoDestination.Error(), "engine: ") {
		t.Error("sentinel errors are prefixed with the package")
	}
}

// Regression: fasthttp invented Content-Types the origin and client never sent.
func TestForwardInventsNoContentType(t *testing.T) {
	var gotCT atomic.Value
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		gotCT.Store(string(ctx.Request.Header.ContentType()))
		ctx.Response.Header.SetNoDefaultContentType(true)
		ctx.SetBodyString("hello")
	})
	c, _ := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod("POST")
	req.Header.SetNoDefaultContentType(true)
	req.SetRequestURI("http://" + c.Addr + "/")
	req.SetBodyString("data")
	resp := &fasthttp.Response{}
	if err := c.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if ct := gotCT.Load().(string); ct != "" {
		t.Errorf("origin got Content-Type %q, the client sent none", ct)
	}
	// fasthttp's client reports a default Content-Type for responses that
	// have none, so the response is read off a raw socket.
	conn, err := net.Dial("tcp4", c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	buf := make([]byte, 1024)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	if raw := strings.ToLower(string(buf[:n])); !strings.HasSuffix(raw, "hello") || strings.Contains(raw, "content-type") {
		t.Errorf("client got %q; the origin sent no Content-Type", buf[:n])
	}
}

func TestAmbiguousPathsRefused(t *testing.T) {
	for p, want := range map[string]bool{
		"/a/b": false, "/a.b/c..d": false, "/.well-known/x": false, "/a/...": false, "/%2e%2e%2e": false, "/a%20b": false,
		"/a/../b": true, "/a/./b": true, "/a/..": true, "/a/%2e%2e/b": true, "/a/%2E./b": true, "/a/.%2e": true, "/%2e/": true,
	} {
		if got := ambiguousPath([]byte(p)); got != want {
			t.Errorf("ambiguousPath(%q) = %v, want %v", p, got, want)
		}
	}
	// Through the engine: a raw socket, since clients normalise such paths.
	origin := startOrigin(t, echoOrigin)
	_, addr := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	conn, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n"))
	buf := make([]byte, 256)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400 ") {
		t.Fatalf("got %q, want 400", buf[:n])
	}
}

// Connection may name hop-by-hop headers, but not the ones that frame the
// message or name its target: deleting Content-Length or Host on a client's
// word would let it reframe what vkp forwards.
func TestConnectionCannotNameFramingHeaders(t *testing.T) {
	var h fasthttp.RequestHeader
	h.SetMethod("POST")
	h.SetHost("example.com")
	h.SetContentLength(5)
	h.Set("X-Hop", "1")
	h.Set("Connection", strings.Repeat("x", 250)+", Content-Length, HOST, x-hop")
	stripHopRequest(&h)
	if h.ContentLength() != 5 || string(h.Host()) != "example.com" || h.Peek("X-Hop") != nil {
		t.Fatalf("after strip: Content-Length %d, Host %q, X-Hop %q", h.ContentLength(), h.Host(), h.Peek("X-Hop"))
	}
}

// Every hop-by-hop name is dropped whatever its case on the wire, Expect only
// from requests, and every other header stays.
func TestStripHopEveryName(t *testing.T) {
	if hopHeaders[0] != "Connection" || len(stripNames) > 32 {
		t.Fatalf("scanHop's bit layout no longer matches hopHeaders")
	}
	var lines strings.Builder
	for i, k := range stripNames {
		if i%2 == 1 {
			k = strings.ToLower(k)
		}
		if k == "Transfer-Encoding" || k == "Connection" {
			continue // framing and connection state: set below as fasthttp sees them
		}
		lines.WriteString(k + ": v\r\n")
	}
	lines.WriteString("Connection: keep-alive\r\nX-Kept: 1\r\nproxy-unknown: 1\r\nExpectation: kept\r\n\r\n")
	var req fasthttp.RequestHeader
	var resp fasthttp.ResponseHeader
	if err := req.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n" + lines.String()))); err != nil {
		t.Fatal(err)
	}
	if err := resp.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + lines.String()))); err != nil {
		t.Fatal(err)
	}
	req.Set("Transfer-Encoding", "v")
	resp.Set("Transfer-Encoding", "v")
	stripHopRequest(&req)
	stripHopResponse(&resp)
	left := func(all headerSeq) map[string]string {
		m := map[string]string{}
		for k, v := range all {
			m[strings.ToLower(string(k))] = string(v)
		}
		return m
	}
	reqLeft, respLeft := left(req.All()), left(resp.All())
	for _, k := range stripNames {
		k = strings.ToLower(k)
		if v, ok := reqLeft[k]; ok {
			t.Errorf("request kept %s: %q", k, v)
		}
		if v, ok := respLeft[k]; ok && k != "expect" {
			t.Errorf("response kept %s: %q", k, v)
		}
	}
	if respLeft["expect"] != "v" {
		t.Errorf("response lost Expect, a request-only name: %q", respLeft["expect"])
	}
	for name, h := range map[string]interface{ Peek(string) []byte }{"request": &req, "response": &resp} {
		if h.Peek("Proxy-Unknown") != nil || string(h.Peek("X-Kept")) != "1" || string(h.Peek("Expectation")) != "kept" {
			t.Errorf("%s: Proxy-Unknown %q, X-Kept %q, Expectation %q", name, h.Peek("Proxy-Unknown"), h.Peek("X-Kept"), h.Peek("Expectation"))
		}
	}
}

// Removing a hop-by-hop header must not reorder the lines of a repeated
// field (RFC 9110 section 5.3), X-Forwarded-For lines are joined with the
// client's address last, and every Connection line names hop-by-hop headers.
func TestForwardKeepsRepeatedFieldOrder(t *testing.T) {
	type seen struct{ accept, xff, secret, via string }
	got := make(chan seen, 1)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		join := func(k string) string {
			var parts []string
			for _, v := range h.PeekAll(k) {
				parts = append(parts, string(v))
			}
			return strings.Join(parts, " | ")
		}
		got <- seen{join("Accept"), join("X-Forwarded-For"), join("X-Secret"), join("Via")}
		r := &ctx.Response.Header
		r.Add("Keep-Alive", "timeout=5")
		r.Add("Link", "<a>")
		r.Add("X-Z", "1")
		r.Add("Link", "<b>")
	})
	_, addr := serveEngine(t, mustEngine(t, oneRoute("", origin), Options{}))
	conn, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nVia: 1.1 a\r\nX-Forwarded-For: 1.1.1.1\r\n" +
		"Accept: a\r\nConnection: X-Secret\r\nX-Secret: s\r\nX-Forwarded-For: 2.2.2.2\r\nVia: 1.1 b\r\nAccept: b\r\n\r\n"))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	s := <-got
	want := seen{accept: "a | b", xff: "1.1.1.1, 2.2.2.2, 127.0.0.1", secret: "", via: "1.1 a | 1.1 b"}
	if s != want {
		t.Errorf("origin saw %+v, want %+v", s, want)
	}
	var links []string
	for _, v := range resp.Header.PeekAll("Link") {
		links = append(links, string(v))
	}
	if strings.Join(links, " ") != "<a> <b>" || resp.Header.Peek("Keep-Alive") != nil {
		t.Errorf("client got Link %q, Keep-Alive %q; want <a> then <b>, no Keep-Alive", links, resp.Header.Peek("Keep-Alive"))
	}
}

// A destination on a unix socket (VKProxy's "http://unix:/path" form): the
// requests reach the app listening on it, with Host: localhost.
func TestForwardToUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("unix " + string(ctx.Path()) + " " + string(ctx.Host()))
	}}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	cfg := `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://unix:` + path + `"}]}}}}`
	c, _ := serveEngine(t, mustEngine(t, cfg, Options{}))
	for range 3 {
		resp := do(t, c, "GET", "/hi", nil, "Host", "public.example")
		if resp.StatusCode() != 200 || string(resp.Body()) != "unix /hi localhost" {
			t.Fatalf("%d %q", resp.StatusCode(), resp.Body())
		}
	}
}
