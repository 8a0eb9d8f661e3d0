package main

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func TestOriginCountsBodies(t *testing.T) {
	ln := fasthttputil.NewInmemoryListener()
	o := NewOrigin(OriginConfig{Size: 128, CacheControl: "public, max-age=60"})
	go o.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer o.srv.Shutdown()
	c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}

	do := func(method, path string, body []byte) *fasthttp.Response {
		t.Helper()
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		resp := &fasthttp.Response{}
		req.SetRequestURI("http://origin" + path)
		req.Header.SetMethod(method)
		req.SetBodyRaw(body)
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	stats := func() OriginStats {
		t.Helper()
		var st OriginStats
		if err := json.Unmarshal(do("GET", "/__stats", nil).Body(), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	body := sharedPattern(mib)
	resp := do("POST", "/upload", body)
	if resp.StatusCode() != 200 || !bytes.Equal(resp.Body(), sharedPattern(128)) {
		t.Fatalf("status %d, body %d bytes; want 200 and the 128-byte pattern", resp.StatusCode(), len(resp.Body()))
	}
	if cc := string(resp.Header.Peek("Cache-Control")); cc != "public, max-age=60" {
		t.Errorf("Cache-Control = %q", cc)
	}
	do("GET", "/x", nil)
	if st := stats(); st != (OriginStats{Requests: 2, BodyBytes: mib}) {
		t.Errorf("stats = %+v, want 2 requests, %d body bytes (/__stats not counted)", st, mib)
	}
	if r := do("POST", "/__reset", nil); r.StatusCode() != fasthttp.StatusNoContent {
		t.Errorf("reset status %d", r.StatusCode())
	}
	if st := stats(); st != (OriginStats{}) {
		t.Errorf("after reset stats = %+v, want zero", st)
	}
}
