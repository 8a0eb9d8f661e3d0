package engine

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// startOrigin runs a real fasthttp server on a loopback port and returns its
// address. It stops when the test ends.
func startOrigin(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, MaxRequestBodySize: 256 << 20, ReadBufferSize: 16 << 10}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return ln.Addr().String()
}

// deadAddr returns a loopback address that refuses connections for the
// whole test: a socket is bound to it but never listens, so the port cannot
// be handed to another listener meanwhile (a closed listener's port can).
func deadAddr(t testing.TB) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

func mustConfig(t testing.TB, src string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatalf("config did not load: %v\n%s", err, src)
	}
	return cfg
}

func mustEngine(t testing.TB, src string, opts Options) *Engine {
	t.Helper()
	e, err := New(mustConfig(t, src), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeEngine(e) })
	return e
}

// closeEngine stops an engine's background work (mirror senders, the
// pools' janitor) as serve does at shutdown.
func closeEngine(e *Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Close(ctx)
}

// oneRoute is a config with one catch-all route to the given addresses.
func oneRoute(routeExtra string, addrs ...string) string {
	var d []string
	for _, a := range addrs {
		d = append(d, `{"Address": "http://`+a+`"}`)
	}
	return `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["*"], "Paths": ["*"]}` + routeExtra + `}},
	  "Clusters": {"c": {"Destinations": [` + strings.Join(d, ",") + `]}}}}`
}

// serveEngine runs the engine's server on a loopback port, returns a client
// pointed at it.
func serveEngine(t testing.TB, e *Engine) (*fasthttp.HostClient, string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveEngineOn(t, e, ln)
}

// serveEngineOn is serveEngine on a listener of the caller's.
func serveEngineOn(t testing.TB, e *Engine, ln net.Listener) (*fasthttp.HostClient, string) {
	srv := e.NewServer()
	go srv.Serve(Listener(ln))           //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	addr := ln.Addr().String()
	return &fasthttp.HostClient{Addr: addr, MaxResponseBodySize: 256 << 20, ReadTimeout: 10 * time.Second}, addr
}

func do(t testing.TB, c *fasthttp.HostClient, method, uri string, body []byte, hdr ...string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + c.Addr + uri)
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Header.SetHost(hdr[i+1])
			req.UseHostHeader = true
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	resp := &fasthttp.Response{}
	if err := c.Do(req, resp); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	return resp
}

// inmemEngine wires an engine to an origin over in-memory connections.
func inmemEngine(t testing.TB, origin fasthttp.RequestHandler) *Engine {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: origin}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { ln.Close() })
	return mustEngine(t, oneRoute("", "origin.test:80"), Options{Dial: func(string) (net.Conn, error) { return ln.Dial() }})
}

// proxiedGET runs one request through the engine handler, as the server
// would: the request is reset from a template each time.
func proxiedGET(e *Engine, ctx *fasthttp.RequestCtx, tmpl *fasthttp.Request) {
	tmpl.CopyTo(&ctx.Request)
	ctx.Response.Reset()
	e.Handle(ctx)
}

func newProxyCtx() (*fasthttp.RequestCtx, *fasthttp.Request) {
	tmpl := &fasthttp.Request{}
	tmpl.Header.SetMethod("GET")
	tmpl.SetRequestURI("/api/items?id=42")
	tmpl.Header.SetHost("api.example.com")
	tmpl.Header.Set("User-Agent", "bench")
	tmpl.Header.Set("X-Forwarded-For", "10.0.0.9")
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	return ctx, tmpl
}

// smallBuf is a socket Control setting one buffer (syscall.SO_RCVBUF or
// SO_SNDBUF) to n bytes: a peer that takes or gives data slowly.
func smallBuf(opt, n int) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, n)
		}); err != nil {
			return err
		}
		return serr
	}
}
