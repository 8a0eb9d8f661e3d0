package engine

// Tests of vkp at the edge, with a raw-socket origin that misbehaves on
// purpose and a raw-socket client: desync on pooled connections, request
// smuggling shapes, trailers, bad header names and versions, retries, bare
// LF, streaming both ways, slow and vanishing clients.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// rawOrigin accepts connections on a loopback port and hands each to serve
// with its index (0, 1, ...). It returns the address; it stops with the test.
func rawOrigin(t testing.TB, serve func(n int, c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return rawOriginOn(t, ln, serve)
}

// rawOriginOn is rawOrigin on a listener of the caller's (socket options).
func rawOriginOn(t testing.TB, ln net.Listener, serve func(n int, c net.Conn, br *bufio.Reader)) string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			}(n)
		}
	}()
	return ln.Addr().String()
}

// readReq reads one request (header and body) from br.
func readReq(br *bufio.Reader) (*fasthttp.Request, error) {
	req := &fasthttp.Request{}
	if err := req.Read(br); err != nil {
		return nil, err
	}
	return req, nil
}

// rawClient sends raw bytes to addr and returns everything read until the
// server closes the connection or wait passes.
func rawClient(t testing.TB, addr, raw string, wait time.Duration) (resp string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait)) //nolint:errcheck
	b, err := io.ReadAll(c)
	return string(b), err == nil
}

// hardEngine serves an engine in front of dests (host "*", path "*").
func hardEngine(t testing.TB, opts Options, routeExtra string, dests ...string) (*Engine, string) {
	t.Helper()
	e := mustEngine(t, oneRoute(routeExtra, dests...), opts)
	_, addr := serveEngine(t, e)
	return e, addr
}

func statusOf(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	return line
}

// Item 1: an upstream that writes a second, unasked response on a kept-alive
// connection must never have it delivered to anyone: the connection is
// closed, the next request gets its own answer on a new one.
func TestUpstreamLateBytesNeverReachAnotherClient(t *testing.T) {
	for _, tc := range []struct{ name, method, answer, late string }{
		{"late second response", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			"HTTP/1.1 299 FORGED\r\nContent-Length: 6\r\n\r\nforged"},
		{"body after a HEAD answer", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", "forged"},
		{"body after a 204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 299 FORGED\r\nContent-Length: 0\r\n\r\n"},
		{"bytes in the same write", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 299 FORGED\r\nContent-Length: 0\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int32
			lateSent := make(chan struct{})
			origin := rawOrigin(t, func(n int, c net.Conn, br *bufio.Reader) {
				conns.Add(1)
				for i := 0; ; i++ {
					req, err := readReq(br)
					if err != nil {
						return
					}
					if i == 0 && n == 0 {
						io.WriteString(c, tc.answer)      //nolint:errcheck
						time.Sleep(50 * time.Millisecond) // late: after the answer was framed
						io.WriteString(c, tc.late)        //nolint:errcheck
						close(lateSent)
						continue
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URI().Path()), req.URI().Path())
				}
			})
			_, addr := hardEngine(t, Options{}, "", origin)
			first, _ := rawClient(t, addr, tc.method+" /first HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 5*time.Second)
			if strings.Contains(first, "FORGED") || strings.Contains(first, "forged") {
				t.Fatalf("first client got the forged bytes: %q", first)
			}
			<-lateSent // the late bytes are on the idle connection now
			for i := range 3 {
				got, _ := rawClient(t, addr, fmt.Sprintf("GET /next%d HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n", i), 5*time.Second)
				if statusOf(got) != "HTTP/1.1 200 OK" || !strings.HasSuffix(got, fmt.Sprintf("/next%d", i)) {
					t.Fatalf("request %d got %q; want its own 200", i, got)
				}
			}
			if n := conns.Load(); n != 2 {
				t.Fatalf("origin saw %d connections; want 2 (the tainted one closed, one new)", n)
			}
		})
	}
}

// Item 2: Content-Length together with Transfer-Encoding, in every
// spelling, is refused with 400 and the connection closed: the smuggled
// request never reaches the origin. What was refused before still is.
func TestRequestSmugglingRefused(t *testing.T) {
	var seen sync.Map
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		seen.Store(string(ctx.Path()), true)
		ctx.SetBodyString("ok")
	})
	_, addr := hardEngine(t, Options{}, "", origin)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		want      string
	}{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "400"},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n" + smuggled, "400"},
		{"TE with trailing space", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n" + smuggled, "400"},
		{"TE with leading tab", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled, "400"},
		{"TE upper case", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n" + smuggled, "400"},
		{"TE identity with CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: identity\r\n\r\nabcd" + smuggled, "50"},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled, "50"},
		{"double CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde" + smuggled, "400"},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" + smuggled, "40"},
		{"NUL in header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n" + smuggled, "400"},
		{"bare CR in header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" + smuggled, "400"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := rawClient(t, addr, tc.raw, 3*time.Second)
			if !strings.HasPrefix(statusOf(resp), "HTTP/1.1 "+tc.want) {
				t.Fatalf("answer %q; want %s...", statusOf(resp), tc.want)
			}
			if !closed {
				t.Fatalf("connection left open after %q", statusOf(resp))
			}
			if strings.Count(resp, "HTTP/1.1 ") != 1 {
				t.Fatalf("more than one answer on the connection: %q", resp)
			}
		})
	}
	if _, ok := seen.Load("/smuggled"); ok {
		t.Fatal("a smuggled request reached the origin")
	}
}

// Item 3: request trailers never become headers upstream (streamed or held
// body), and response trailers never become headers for the client.
func TestTrailersNeverBecomeHeaders(t *testing.T) {
	var got atomic.Value
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/t" {
			got.Store(string(ctx.Request.Header.Peek("X-Auth-User")) + "|" + string(ctx.Request.Body()))
		}
	})
	chunked := "POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Auth-User: admin\r\n\r\n"
	for _, tc := range []struct{ name, extra string }{
		{"streamed body", ""},
		{"held body (mirrored route)", `, "Metadata": {"MirrorCluster": "c"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got.Store("")
			_, addr := hardEngine(t, Options{}, tc.extra, origin)
			resp, _ := rawClient(t, addr, chunked+"GET /end HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
			if statusOf(resp) != "HTTP/1.1 200 OK" {
				t.Fatalf("answer %q", resp)
			}
			if v := got.Load().(string); v != "|hello" {
				t.Fatalf("origin saw X-Auth-User|body = %q; want the body and no X-Auth-User", v)
			}
		})
	}

	respOrigin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readReq(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Secret\r\n\r\n3\r\nabc\r\n0\r\nX-Secret: 1\r\n\r\n") //nolint:errcheck
		}
	})
	_, addr := hardEngine(t, Options{}, "", respOrigin)
	resp, _ := rawClient(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
	head, body, _ := strings.Cut(resp, "\r\n\r\n")
	if statusOf(resp) != "HTTP/1.1 200 OK" || body != "abc" || strings.Contains(strings.ToLower(head), "x-secret") {
		t.Fatalf("response trailer leaked or body wrong: %q", resp)
	}
}

// Items 4, 5 and 6: header names with a space → 400; versions other than
// 1.0 and 1.1 → 505; an HTTP/1.0 request without Host is routed (host "*")
// and reaches the upstream as HTTP/1.1 with the destination's authority as
// Host; an HTTP/1.1 request without Host → 400.
func TestRequestLineAndHeaderNames(t *testing.T) {
	var proto, host atomic.Value
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		proto.Store(string(ctx.Request.Header.Protocol()))
		host.Store(string(ctx.Request.Header.Host()))
		ctx.SetBodyString("fine")
	})
	_, addr := hardEngine(t, Options{}, "", origin)
	for _, tc := range []struct{ name, raw, want string }{
		{"space in a name", "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", "HTTP/1.1 400"},
		{"Content Length with a space", "POST / HTTP/1.1\r\nHost: x\r\nContent Length: 5\r\n\r\nhello", "HTTP/1.1 400"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "HTTP/1.1 400"},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"HTTP/9.9", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := rawClient(t, addr, tc.raw, 3*time.Second)
			if !strings.HasPrefix(resp, tc.want) || !closed {
				t.Fatalf("answer %q (closed %v); want %s and the connection closed", statusOf(resp), closed, tc.want)
			}
		})
	}
	resp, _ := rawClient(t, addr, "GET /a HTTP/1.0\r\n\r\n", 3*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.0 200") && !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.HasSuffix(resp, "fine") {
		t.Fatalf("HTTP/1.0 without Host: %q", resp)
	}
	if p, h := proto.Load(), host.Load(); p != "HTTP/1.1" || h != origin {
		t.Fatalf("upstream got %v with Host %q; want HTTP/1.1 and Host %q", p, h, origin)
	}
}

// Item 7: a request is retried only when nothing of a response arrived and
// the method is idempotent, once, on the next destination; a response cut
// mid-body or malformed is never retried.
func TestRetryRules(t *testing.T) {
	type script func(c net.Conn)
	cut := func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial") //nolint:errcheck
		c.(*net.TCPConn).SetLinger(0)                                              //nolint:errcheck // close with RST
	}
	malformed := func(c net.Conn) { io.WriteString(c, "HTTP/1.1 abc\r\n\r\n") }                        //nolint:errcheck
	silent := func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) }                                       //nolint:errcheck
	answer := func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") } //nolint:errcheck
	counting := func(s script, hits *atomic.Int32) string {
		return rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
			if _, err := readReq(br); err != nil {
				return
			}
			hits.Add(1)
			s(c)
		})
	}
	for _, tc := range []struct {
		name       string
		method     string
		first      script
		second     script // nil: one destination
		wantStatus int
		wantHits   [2]int32
	}{
		{"GET reset mid-body: no retry", "GET", cut, answer, 502, [2]int32{1, 0}},
		{"GET malformed answer: no retry", "GET", malformed, answer, 502, [2]int32{1, 0}},
		{"GET no answer: once more, next destination", "GET", silent, answer, 200, [2]int32{1, 1}},
		{"GET no answer, one destination: once more", "GET", silent, nil, 502, [2]int32{2, 0}},
		{"POST no answer: no retry", "POST", silent, answer, 502, [2]int32{1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h1, h2 atomic.Int32
			dests := []string{counting(tc.first, &h1)}
			if tc.second != nil {
				dests = append(dests, counting(tc.second, &h2))
			}
			e := mustEngine(t, oneRoute("", dests...)+"", Options{})
			e.Current().Clusters["c"].picker = &RoundRobinPicker{} // first destination first
			c, _ := serveEngine(t, e)
			var body []byte
			if tc.method == "POST" {
				body = []byte("pay once")
			}
			resp := do(t, c, tc.method, "/", body)
			if resp.StatusCode() != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode(), tc.wantStatus)
			}
			if got := [2]int32{h1.Load(), h2.Load()}; got != tc.wantHits {
				t.Fatalf("origin hits %v, want %v", got, tc.wantHits)
			}
		})
	}
}

// Item 8: an upstream answering with bare-LF line ends is understood.
func TestBareLFResponseAccepted(t *testing.T) {
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readReq(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\nContent-Length: 5\nX-Lf: yes\n\nhello") //nolint:errcheck
		}
	})
	_, addr := hardEngine(t, Options{}, `, "Timeout": "00:00:05"`, origin)
	start := time.Now()
	resp, _ := rawClient(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 6*time.Second)
	if statusOf(resp) != "HTTP/1.1 200 OK" || !strings.HasSuffix(resp, "hello") || !strings.Contains(resp, "X-Lf: yes") {
		t.Fatalf("bare-LF answer came through as %q", resp)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v: bare LF must not wait for the timeout", d)
	}
}

// Item 9: a large response is streamed: the client has its first bytes
// while the origin is still sending (the origin waits for that before it
// sends the rest), and the body arrives whole.
func TestLargeResponseStreams(t *testing.T) {
	const half = 4 << 20
	gotFirst := make(chan struct{})
	for _, framing := range []string{"length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			gotFirst = make(chan struct{})
			origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := readReq(br); err != nil {
					return
				}
				part := bytes.Repeat([]byte("a"), half)
				if framing == "length" {
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 2*half)
					c.Write(part) //nolint:errcheck
				} else {
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", half, part)
				}
				select {
				case <-gotFirst:
				case <-time.After(5 * time.Second):
					return // the proxy held the first half back: the client never saw it
				}
				if framing == "length" {
					c.Write(part) //nolint:errcheck
				} else {
					fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", half, part)
				}
			})
			_, addr := hardEngine(t, Options{}, "", origin)
			conn, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
			br := bufio.NewReader(conn)
			var resp fasthttp.Response
			conn.SetReadDeadline(time.Now().Add(4 * time.Second)) //nolint:errcheck
			if err := resp.Header.Read(br); err != nil {
				t.Fatalf("no header while the origin holds the second half: %v", err)
			}
			if _, err := br.Peek(1); err != nil {
				t.Fatalf("no body byte while the origin holds the second half: %v", err)
			}
			close(gotFirst)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
			if err := resp.ReadBody(br, 0); err != nil {
				t.Fatal(err)
			}
			if len(resp.Body()) != 2*half || bytes.Count(resp.Body(), []byte("a")) != 2*half {
				t.Fatalf("body of %d bytes, want %d", len(resp.Body()), 2*half)
			}
		})
	}
}

// Item 10: a large request body on a route that neither mirrors nor caches
// is streamed: the origin has its first bytes while the client is still
// sending, and no body memory is held. On a mirrored route, a body that does
// not fit the body budget still reaches the origin (streamed) and its copy
// is dropped and counted.
func TestLargeRequestBodyStreams(t *testing.T) {
	const half = 4 << 20
	var originFirst = make(chan struct{})
	var originGot atomic.Int64
	origin := startOriginStreaming(t, func(ctx *fasthttp.RequestCtx) {
		r := ctx.RequestBodyStream()
		var buf [32 << 10]byte
		n, _ := io.ReadAtLeast(r, buf[:], 1)
		close(originFirst)
		m, _ := io.Copy(io.Discard, r)
		originGot.Store(int64(n) + m)
		ctx.SetBodyString("got it")
	})
	e, addr := hardEngine(t, Options{}, "", origin)
	conn, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 2*half)
	conn.Write(bytes.Repeat([]byte("b"), half)) //nolint:errcheck
	select {
	case <-originFirst:
	case <-time.After(5 * time.Second):
		t.Fatal("the origin saw nothing of the body while the client was still sending: it was held")
	}
	if m := e.bodyMem.Load(); m != 0 {
		t.Fatalf("%d bytes of body memory held for a streamed body", m)
	}
	conn.Write(bytes.Repeat([]byte("b"), half))            //nolint:errcheck
	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 || originGot.Load() != 2*half {
		t.Fatalf("status %d, origin got %d bytes; want 200 and %d", resp.StatusCode(), originGot.Load(), 2*half)
	}
}

func TestMirroredBodyOverBudgetStillServed(t *testing.T) {
	sh := newShadow()
	var got atomic.Int64
	main := startOrigin(t, func(ctx *fasthttp.RequestCtx) { got.Store(int64(len(ctx.Request.Body()))) })
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))), Options{BodyMemory: 1 << 20})
	c, _ := serveEngine(t, e)
	body := make([]byte, 3<<20)
	if resp := do(t, c, "POST", "/", body); resp.StatusCode() != 200 || got.Load() != 3<<20 {
		t.Fatalf("status %d, origin got %d bytes", resp.StatusCode(), got.Load())
	}
	st := waitMirror(t, e, 5*time.Second)
	if st.Due != 1 || st.Dropped != 1 || st.DroppedBody != 1 || sh.n.Load() != 0 {
		t.Fatalf("%+v; want the copy dropped for the body budget", st)
	}
	if m := e.bodyMem.Load(); m != 0 {
		t.Fatalf("body memory %d after the request; want 0", m)
	}
}

// startOriginStreaming is startOrigin with request bodies streamed to the
// handler.
func startOriginStreaming(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, StreamRequestBody: true, MaxRequestBodySize: 256 << 20}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return ln.Addr().String()
}

// Item 11: a header not complete within the header timeout gets 408 and the
// connection closed (silent clients and header drips alike); a body that
// stops arriving gets 408 after the body timeout; ordinary requests are
// answered meanwhile.
func TestSlowClients(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	_, addr := hardEngine(t, Options{HeaderTimeout: 300 * time.Millisecond, BodyTimeout: 300 * time.Millisecond}, "", origin)
	type result struct {
		resp   string
		closed bool
		took   time.Duration
	}
	run := func(steps func(c net.Conn)) result {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		go steps(c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		b, err := io.ReadAll(c)
		// A reset counts as closed: the dripping client's unread lines
		// make the close a reset.
		return result{string(b), err == nil || errors.Is(err, syscall.ECONNRESET), time.Since(start)}
	}
	var wg sync.WaitGroup
	results := make([]result, 3)
	wg.Add(3)
	go func() { defer wg.Done(); results[0] = run(func(net.Conn) {}) }() // silent
	go func() {                                                          // one header line every 100 ms
		defer wg.Done()
		results[1] = run(func(c net.Conn) {
			io.WriteString(c, "GET / HTTP/1.1\r\n") //nolint:errcheck
			for i := 0; i < 20; i++ {
				time.Sleep(100 * time.Millisecond)
				if _, err := fmt.Fprintf(c, "X-Drip-%d: 1\r\n", i); err != nil {
					return
				}
			}
		})
	}()
	go func() { // half a body, then nothing
		defer wg.Done()
		results[2] = run(func(c net.Conn) {
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n") //nolint:errcheck
			c.Write(make([]byte, 50000))                                                      //nolint:errcheck
		})
	}()
	// Meanwhile, ordinary requests are answered.
	for i := 0; i < 5; i++ {
		if resp, _ := rawClient(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2*time.Second); !strings.HasSuffix(resp, "ok") {
			t.Fatalf("ordinary request during the attack: %q", resp)
		}
	}
	wg.Wait()
	for i, name := range []string{"silent", "header drip", "stalled body"} {
		r := results[i]
		if !strings.HasPrefix(r.resp, "HTTP/1.1 408") || !r.closed || r.took > 3*time.Second {
			t.Errorf("%s client: %q closed=%v after %v; want 408 and close within the timeout", name, statusOf(r.resp), r.closed, r.took)
		}
	}
}

// Item 12: a client that leaves while the upstream is slow releases its
// upstream connection within about a second, not at the route timeout.
func TestAbandonedRequestReleasesUpstream(t *testing.T) {
	closedAt := make(chan time.Time, 1)
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readReq(br); err != nil {
			return
		}
		// Never answer; report when the proxy hangs up.
		c.SetReadDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
		var b [1]byte
		c.Read(b[:]) //nolint:errcheck
		closedAt <- time.Now()
	})
	_, addr := hardEngine(t, Options{}, `, "Timeout": "00:01:00"`, origin)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	time.Sleep(300 * time.Millisecond)
	left := time.Now()
	c.Close()
	select {
	case at := <-closedAt:
		if d := at.Sub(left); d > 2500*time.Millisecond {
			t.Fatalf("upstream connection released %v after the client left; want about a second", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream connection still held 10 s after the client left")
	}
}

// tlsOrigin is rawOrigin over TLS with a throwaway self-signed certificate.
func tlsOrigin(t testing.TB, serve func(n int, c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	return rawOrigin(t, func(n int, c net.Conn, _ *bufio.Reader) {
		tc := tls.Server(c, conf)
		defer tc.Close()
		serve(n, tc, bufio.NewReader(tc))
	})
}

// Review finding: crypto/tls hands out one record per Read and keeps the
// next; a second response in its own record after a HEAD answer must not
// reach the next client.
func TestTLSUpstreamLeftoverRecordNeverReused(t *testing.T) {
	var conns atomic.Int32
	origin := tlsOrigin(t, func(n int, c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for i := 0; ; i++ {
			req, err := readReq(br)
			if err != nil {
				return
			}
			if n == 0 && i == 0 {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 41\r\n\r\n")    //nolint:errcheck
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL") //nolint:errcheck
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URI().Path()), req.URI().Path())
		}
	})
	cfg := `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["*"], "Paths": ["*"]}}},
	  "Clusters": {"c": {"HttpClientConfig": {"DangerousAcceptAnyServerCertificate": true},
	    "Destinations": [{"Address": "https://` + origin + `"}]}}}}`
	_, addr := serveEngine(t, mustEngine(t, cfg, Options{}))
	rawClient(t, addr, "HEAD /first HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	got, _ := rawClient(t, addr, "GET /victim HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n", 5*time.Second)
	if strings.Contains(got, "EVIL") || !strings.HasSuffix(got, "/victim") {
		t.Fatalf("the next client got %q", got)
	}
}

// Review finding: the client check must not take a client that is still
// there for gone once its socket's read deadline (the header timeout) has
// passed, and an idle upstream connection must stay usable past a second.
func TestSlowUpstreamAndIdleReuse(t *testing.T) {
	var conns atomic.Int32
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := readReq(br)
			if err != nil {
				return
			}
			if string(req.URI().Path()) == "/slow" {
				time.Sleep(time.Second)
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
		}
	})
	_, addr := hardEngine(t, Options{HeaderTimeout: 300 * time.Millisecond}, "", origin)
	resp, _ := rawClient(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != "HTTP/1.1 200 OK" {
		t.Fatalf("an upstream slower than the header timeout: %q", resp)
	}
	time.Sleep(1500 * time.Millisecond)
	resp, _ = rawClient(t, addr, "GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != "HTTP/1.1 200 OK" || conns.Load() != 1 {
		t.Fatalf("after 1.5 s idle: %q over %d upstream connections; want the idle one reused", statusOf(resp), conns.Load())
	}
}

// Review findings: an HTTP/1.0 upstream's close-delimited answer reaches an
// HTTP/1.1 client framed as HTTP/1.1; Connection: Close in any case (or in
// a list) ends the upstream connection; CONNECT is refused; OPTIONS * is
// sent as such; a status below 100 is malformed.
func TestUpstreamFramingCases(t *testing.T) {
	body := strings.Repeat("d", 100000)
	var conns atomic.Int32
	var lastTarget atomic.Value
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := readReq(br)
			if err != nil {
				return
			}
			lastTarget.Store(string(req.Header.RequestURI()))
			switch string(req.Header.RequestURI()) {
			case "/http10":
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"+body) //nolint:errcheck
				return
			case "/close":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
				time.Sleep(30 * time.Millisecond)
				return
			case "/status0":
				io.WriteString(c, "HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
			}
		}
	})
	_, addr := hardEngine(t, Options{}, "", origin)

	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /http10 HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	var resp fasthttp.Response
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if err := resp.Read(bufio.NewReader(c)); err != nil || string(resp.Body()) != body || !bytes.Equal(resp.Header.Protocol(), []byte("HTTP/1.1")) {
		t.Fatalf("HTTP/1.0 upstream: %v, %d bytes, %s", err, len(resp.Body()), resp.Header.Protocol())
	}

	conn, _ := net.Dial("tcp4", addr)
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := range 2 {
		io.WriteString(conn, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
		var r fasthttp.Response
		conn.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		if err := r.Read(br); err != nil || r.StatusCode() != 200 {
			t.Fatalf("Connection: Keep-Alive, Close, request %d: %v %d", i, err, r.StatusCode())
		}
		time.Sleep(60 * time.Millisecond)
	}

	if got, _ := rawClient(t, addr, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 3*time.Second); !strings.HasPrefix(got, "HTTP/1.1 405") {
		t.Fatalf("CONNECT: %q", statusOf(got))
	}
	if got, _ := rawClient(t, addr, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second); statusOf(got) != "HTTP/1.1 200 OK" || lastTarget.Load() != "*" {
		t.Fatalf("OPTIONS *: %q, upstream target %v", statusOf(got), lastTarget.Load())
	}
	if got, _ := rawClient(t, addr, "GET /status0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second); !strings.HasPrefix(got, "HTTP/1.1 502") {
		t.Fatalf("status 000: %q", statusOf(got))
	}
}

// Review finding: an HTTP/1.0 client gets a large response of unknown
// length as it arrives, delimited by the close, not held whole.
func TestHTTP10ClientStreamedUntilClose(t *testing.T) {
	const part = 1 << 20
	gotFirst := make(chan struct{})
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readReq(br); err != nil {
			return
		}
		p := strings.Repeat("e", part)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", part, p)
		select {
		case <-gotFirst:
		case <-time.After(5 * time.Second):
			return
		}
		fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", part, p)
	})
	_, addr := hardEngine(t, Options{}, "", origin)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")        //nolint:errcheck
	c.SetReadDeadline(time.Now().Add(4 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		t.Fatalf("nothing while the origin holds the second half: %v", err)
	}
	close(gotFirst)
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	all, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(all), "\r\n\r\n")
	if len(body) != 2*part || strings.Contains(strings.ToLower(head), "transfer-encoding") || strings.Contains(strings.ToLower(head), "content-length") {
		t.Fatalf("HTTP/1.0 client got %d body bytes with header %q", len(body), head)
	}
}

// Review finding: body memory is charged as the body arrives, so a client
// that announces a large body and trickles it holds only what it sent.
func TestBodyMemoryChargedOnArrival(t *testing.T) {
	e, slow := mirroredUpload(t, 1<<20, 1<<20)
	slow.Write(make([]byte, 8<<10)) //nolint:errcheck
	time.Sleep(200 * time.Millisecond)
	if m := e.bodyMem.Load(); m >= 1<<20 {
		t.Fatalf("a client that sent 8 KiB of a 1 MiB body holds %d bytes of the budget", m)
	}
	c, _ := serveEngine(t, e)
	if resp := do(t, c, "POST", "/", make([]byte, 64<<10)); resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	if st := waitMirror(t, e, 5*time.Second); st.DroppedBody != 0 || st.Sent != 1 {
		t.Fatalf("%+v; want the small request's copy sent", st)
	}
}

// Review finding: a client that leaves while a streamed response waits on a
// quiet upstream releases the upstream connection within about a second.
func TestClientGoneWhileStreaming(t *testing.T) {
	closed := make(chan time.Time, 1)
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readReq(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 10<<20, strings.Repeat("f", 1<<20))
		c.SetReadDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
		var b [1]byte
		c.Read(b[:]) //nolint:errcheck
		closed <- time.Now()
	})
	_, addr := hardEngine(t, Options{}, `, "Timeout": "00:01:00"`, origin)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	io.ReadFull(c, make([]byte, 64<<10))                   //nolint:errcheck
	leaveAndWaitRelease(t, c, closed, "the client left mid-stream")
}

// leaveAndWaitRelease closes the client connection c and fails t unless
// the upstream connection is closed (closed receives when) within 2.5 s.
func leaveAndWaitRelease(t *testing.T, c net.Conn, closed <-chan time.Time, what string) {
	t.Helper()
	left := time.Now()
	c.Close()
	select {
	case at := <-closed:
		if d := at.Sub(left); d > 2500*time.Millisecond {
			t.Fatalf("upstream released %v after %s", d, what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("upstream still held 10 s after %s", what)
	}
}

// Review finding: an upstream that answers a large upload early (401) and
// stops reading gets its answer forwarded, not a 502.
func TestEarlyAnswerToLargeUpload(t *testing.T) {
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		var h fasthttp.RequestHeader
		if err := h.Read(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope") //nolint:errcheck
		c.(*net.TCPConn).CloseWrite()                                                                        //nolint:errcheck
		io.CopyN(io.Discard, br, 256<<10)                                                                    //nolint:errcheck
	})
	_, addr := hardEngine(t, Options{}, "", origin)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 32 << 20
	fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n)
	go c.Write(make([]byte, n))                         //nolint:errcheck
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil || resp.StatusCode() != 401 {
		t.Fatalf("early 401 to a 32 MiB upload: %v, status %d", err, resp.StatusCode())
	}
}

// Review finding: an interim answer, or a malformed bare-LF one, is part of
// a response: the request is not retried after it.
func TestNoRetryAfterInterimAnswer(t *testing.T) {
	for name, answer := range map[string]string{
		"100 then close":    "HTTP/1.1 100 Continue\r\n\r\n",
		"bare-LF malformed": "HTTP/1.1 abc\n\n",
		"101 switching":     "HTTP/1.1 101 Switching Protocols\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			var hits atomic.Int32
			origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := readReq(br); err != nil {
					return
				}
				hits.Add(1)
				io.WriteString(c, answer) //nolint:errcheck
			})
			_, addr := hardEngine(t, Options{}, "", origin)
			got, _ := rawClient(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 502") || hits.Load() != 1 {
				t.Fatalf("%q after %d attempts; want 502 after one", statusOf(got), hits.Load())
			}
		})
	}
}

// Review finding: a chunked response's first part reaches the client while
// the upstream is still quiet (an event stream must not wait for 64 KiB).
func TestChunkedResponseFirstPartNotHeld(t *testing.T) {
	release := make(chan struct{})
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readReq(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n") //nolint:errcheck
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(c, "9\r\ndata: 2\n\n\r\n0\r\n\r\n") //nolint:errcheck
	})
	_, addr := hardEngine(t, Options{}, "", origin)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	c.SetReadDeadline(time.Now().Add(3 * time.Second))           //nolint:errcheck
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("data: 1")) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("the first event did not arrive while the upstream was quiet (%v); got %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
	close(release)
}

// An upstream chunk size may have leading zeros; a stray CR in its line is
// malformed.
func TestChunkSizeLines(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"5\r\n", 5, true}, {"0000000000000000005\r\n", 5, true}, {"5;ext=1\r\n", 5, true}, {"5\n", 5, true},
		{"1000000000000000\r\n", 0, false}, {"2\r\r\n", 0, false}, {"x\r\n", 0, false}, {"5 x\r\n", 0, false},
	} {
		n, err := readChunkSize(bufio.NewReader(strings.NewReader(tc.line)))
		if (err == nil) != tc.ok || (tc.ok && n != tc.n) {
			t.Errorf("readChunkSize(%q) = %d, %v", tc.line, n, err)
		}
	}
}

// inUse counts the connections of e's pools in use, and the requests its
// hosts count in flight.
func inUse(e *Engine) (conns int, inflight int64) {
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	for _, u := range e.reg.pools {
		u.mu.Lock()
		conns += u.open - len(u.idle)
		u.mu.Unlock()
	}
	for _, h := range e.reg.hosts {
		inflight += h.inflight.Load()
	}
	return conns, inflight
}

// Second review, finding 1: an HTTP/1.0 request answered with a stream,
// pipelined behind one whose answer fasthttp still holds, from a client that
// resets: fasthttp never runs the takeover, and the stream (its upstream
// connection, slot and in-flight count) must still be closed.
func TestHTTP10StreamNeverTakenOverIsClosed(t *testing.T) {
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := readReq(br)
			if err != nil {
				return
			}
			if string(req.URI().Path()) == "/sse" {
				time.Sleep(300 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n") //nolint:errcheck
				c.SetReadDeadline(time.Now().Add(10 * time.Second))                                      //nolint:errcheck
				io.Copy(io.Discard, c)                                                                   //nolint:errcheck
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
		}
	})
	e, addr := hardEngine(t, Options{WriteTimeout: 500 * time.Millisecond}, "", origin)
	for range 5 {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /sse HTTP/1.0\r\n\r\n") //nolint:errcheck
		time.Sleep(100 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0) //nolint:errcheck
		c.Close()
	}
	waitFor(t, "every upstream connection and in-flight count to be given back", func() bool {
		n, f := inUse(e)
		return n == 0 && f == 0
	})
}

// Second review, finding 2: an HTTP/1.0 client that leaves a stream while
// the upstream is quiet releases the upstream connection within a second or
// so, as an HTTP/1.1 client does.
func TestHTTP10ClientGoneWhileStreaming(t *testing.T) {
	closed := make(chan time.Time, 1)
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readReq(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n") //nolint:errcheck
		c.SetReadDeadline(time.Now().Add(20 * time.Second))                                      //nolint:errcheck
		var b [1]byte
		c.Read(b[:]) //nolint:errcheck
		closed <- time.Now()
	})
	_, addr := hardEngine(t, Options{}, `, "Timeout": "00:01:00"`, origin)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")        //nolint:errcheck
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	if _, err := br.ReadString('o'); err != nil { // "hello" is there
		t.Fatal(err)
	}
	leaveAndWaitRelease(t, c, closed, "the HTTP/1.0 client left")
}

// Second review, finding 3: the route's Timeout bounds each wait for more of
// a chunked body, the first included, not the exchange as a whole.
func TestChunkedBodyWaitsGetTheTimeoutEach(t *testing.T) {
	origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readReq(br); err != nil {
			return
		}
		time.Sleep(600 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") //nolint:errcheck
		time.Sleep(600 * time.Millisecond)
		io.WriteString(c, "5\r\nhello\r\n0\r\n\r\n") //nolint:errcheck
	})
	_, addr := hardEngine(t, Options{}, `, "Timeout": "00:00:01"`, origin)
	resp, _ := rawClient(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != "HTTP/1.1 200 OK" || !strings.HasSuffix(resp, "hello") {
		t.Fatalf("two waits of 0.6 s under a 1 s Timeout: %q", resp)
	}
}

// Second review, findings 4 and 5: an upstream that answers before taking
// the whole request gets its answer forwarded whether the body was held
// (<= --body-buffer) or streamed, whether it closed or just stopped reading,
// and the request is not sent again.
func TestEarlyAnswerEveryBodyMode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		size   int
		close  bool
	}{
		{"held POST, upstream closes", "POST", 1 << 20, true},
		{"held PUT, upstream closes", "PUT", 1 << 20, true},
		{"streamed POST, upstream stops reading", "POST", 8 << 20, false},
		{"held PUT, upstream stops reading", "PUT", 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			stop := make(chan struct{})
			answer := func(_ int, c net.Conn, br *bufio.Reader) {
				var h fasthttp.RequestHeader
				if err := h.Read(br); err != nil {
					return
				}
				hits.Add(1)
				io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig") //nolint:errcheck
				if tc.close {
					c.(*net.TCPConn).CloseWrite()    //nolint:errcheck
					io.CopyN(io.Discard, br, 64<<10) //nolint:errcheck
					return
				}
				<-stop // neither reads nor closes, until the test ends
			}
			e := mustEngine(t, oneRoute("", rawOrigin(t, answer), rawOrigin(t, answer)), Options{})
			t.Cleanup(func() { close(stop) })
			c, _ := serveEngine(t, e)
			start := time.Now()
			resp := do(t, c, tc.method, "/up", make([]byte, tc.size))
			if resp.StatusCode() != 413 || hits.Load() != 1 {
				t.Fatalf("status %d after %d attempts; want the upstream's 413 after one", resp.StatusCode(), hits.Load())
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Fatalf("the early answer took %v", d)
			}
		})
	}
}

// A client that sends the first part of a body of known length as fast as
// vkp reads (a read of 64 KiB comes back full) gets room for the rest at
// once: the budget is charged for the Content-Length, no more, and the
// body arrives whole.
func TestBodyMemoryFastClientChargedOnce(t *testing.T) {
	const n = 1 << 20
	e, c := mirroredUpload(t, 4<<20, n)
	c.Write(make([]byte, 256<<10)) //nolint:errcheck
	deadline := time.Now().Add(5 * time.Second)
	for e.bodyMem.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m := e.bodyMem.Load(); m != n {
		t.Fatalf("after 256 KiB of a 1 MiB body at once, %d bytes are charged, want the Content-Length %d", m, n)
	}
	c.Write(make([]byte, n-256<<10))                   //nolint:errcheck
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(c)); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("%v %d", err, resp.StatusCode())
	}
	if st := waitMirror(t, e, 5*time.Second); st.Sent != 1 || st.DroppedBody != 0 {
		t.Fatalf("%+v; want the copy sent whole", st)
	}
}

// --body-memory is charged for what a held body's buffer holds, its
// capacity: a body one byte over 1 MiB is held in a 2 MiB buffer (a size
// class of the reserve) and charged 2 MiB while its request is served.
func TestBodyMemoryChargedForCapacity(t *testing.T) {
	gate := make(chan struct{})
	main := startOrigin(t, func(ctx *fasthttp.RequestCtx) { <-gate })
	sh := newShadow()
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))),
		Options{BodyMemory: 64 << 20})
	c, _ := serveEngine(t, e)
	done := make(chan *fasthttp.Response, 1)
	go func() { done <- do(t, c, "POST", "/", make([]byte, 1<<20+1)) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.bodyMem.Load() < 2<<20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	m := e.bodyMem.Load()
	close(gate)
	if m != 2<<20 {
		t.Fatalf("a held body of 1 MiB + 1 byte is charged %d bytes, want its buffer's 2 MiB", m)
	}
	if resp := <-done; resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}
}

// mirroredUpload starts an engine with a mirrored route and the given
// body budget, opens a connection to it and sends the head of a POST
// announcing n body bytes; the connection closes with the test.
func mirroredUpload(t *testing.T, budget int64, n int) (*Engine, net.Conn) {
	t.Helper()
	sh := newShadow()
	e := mustEngine(t, mirrorConfig(startOrigin(t, mainOrigin), `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))),
		Options{BodyMemory: budget})
	_, addr := serveEngine(t, e)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n)
	return e, c
}
