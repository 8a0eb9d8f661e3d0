package expr

import (
	"bufio"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// fakeTLSConn makes ctx.IsTLS() true without a handshake.
type fakeTLSConn struct{ net.Conn }

func (fakeTLSConn) Handshake() error                     { return nil }
func (fakeTLSConn) ConnectionState() tls.ConnectionState { return tls.ConnectionState{} }

// baseCtx is a GET built with fasthttp's setters: repeated headers and query
// keys, cookies, a numeric header, no body and no Content-Length.
func baseCtx() *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	// Set explicitly: for a method never set, fasthttp's Header.Method
	// allocates a fresh "GET" on every call (a parsed request always has one).
	ctx.Request.Header.SetMethod(fasthttp.MethodGet)
	ctx.Request.SetRequestURI("/api/123?a=1&a=2&B=x")
	ctx.Request.Header.SetHost("example.com:8080")
	ctx.Request.Header.SetUserAgent("test-ua/1.0")
	ctx.Request.Header.Set("X-Env", "test")
	ctx.Request.Header.Add("X-Multi", "one")
	ctx.Request.Header.Add("X-Multi", "two")
	ctx.Request.Header.Set("X-List", "a, b")
	ctx.Request.Header.Set("X-Num", "42")
	ctx.Request.Header.Set("X-Float", " 3.5 ")
	ctx.Request.Header.Set("X-Flag", "True")
	ctx.Request.Header.Set("X-Quote", `it's "quoted"`)
	ctx.Request.Header.Set("X-Bs", `a\\b`)
	ctx.Request.Header.SetCookie("sid", "abc")
	ctx.Request.Header.SetCookie("Theme", "dark")
	return &ctx
}

func mustCompile(tb testing.TB, src string) *Predicate {
	tb.Helper()
	p, err := Compile(src)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// rawCtx parses a request from its wire form, as the server would.
func rawCtx(t testing.TB, tlsConn bool, head []string, body string) *fasthttp.RequestCtx {
	t.Helper()
	if body != "" {
		head = append(head, "Content-Length: "+strconv.Itoa(len(body)))
	}
	return readCtx(t, tlsConn, strings.Join(head, "\r\n")+"\r\n\r\n"+body)
}

func readCtx(t testing.TB, tlsConn bool, raw string) *fasthttp.RequestCtx {
	t.Helper()
	ctx := &fasthttp.RequestCtx{}
	if tlsConn {
		ctx.Init2(fakeTLSConn{}, nil, false)
	}
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatalf("read request: %v", err)
	}
	return ctx
}

const multipartBody = "--XYZ\r\n" +
	"Content-Disposition: form-data; name=\"name\"\r\n\r\n" +
	"Bob\r\n" +
	"--XYZ\r\n" +
	"Content-Disposition: form-data; name=\"tag\"\r\n\r\n" +
	"x\r\n" +
	"--XYZ--\r\n"

// sampleCtxs are the requests the table tests and fuzz targets run against.
func sampleCtxs(t testing.TB) map[string]*fasthttp.RequestCtx {
	return map[string]*fasthttp.RequestCtx{
		"base":   baseCtx(),
		"tls":    rawCtx(t, true, []string{"GET /secure HTTP/1.1", "Host: example.com"}, ""),
		"http10": rawCtx(t, false, []string{"GET /old?x=1 HTTP/1.0", "Host: old.example"}, ""),
		"form": rawCtx(t, false, []string{"POST /submit HTTP/1.1", "Host: example.com",
			"Content-Type: application/x-www-form-urlencoded"}, "name=Bob&tag=x&tag=y"),
		"json": rawCtx(t, false, []string{"POST /submit?name=q HTTP/1.1", "Host: example.com",
			"Content-Type: application/json; charset=utf-8"}, "{}"),
		"multipart": rawCtx(t, false, []string{"POST /upload HTTP/1.1", "Host: example.com",
			"Content-Type: multipart/form-data; boundary=XYZ"}, multipartBody),
		"chunked": readCtx(t, false, "POST /c HTTP/1.1\r\nHost: example.com\r\n"+
			"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
		"zero": rawCtx(t, false, []string{"POST /z HTTP/1.1", "Host: example.com", "Content-Length: 0"}, ""),
	}
}
