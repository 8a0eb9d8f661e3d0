package main

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The seed's CORS config as a user runs it (configs/seed-cors.json): the
// preflight answered by vkp, the actual requests forwarded with their CORS
// fields, any method.
func TestE2ECORSSeedConfig(t *testing.T) {
	var n atomic.Int64
	dest := origin(t, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		ctx.Response.Header.Set("Access-Control-Allow-Origin", "https://upstream.example")
		ctx.SetBodyString(string(ctx.Method()) + " " + string(ctx.Path()))
	})
	src, err := os.ReadFile("configs/seed-cors.json")
	if err != nil {
		t.Fatal(err)
	}
	p := startVKP(t, strings.ReplaceAll(string(src), "127.0.0.2:8989", dest))
	send := func(method, host string, hdr ...string) *fasthttp.Response {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), &fasthttp.Response{}
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://" + p.addr + "/items")
		req.Header.SetHost(host)
		req.UseHostHeader = true
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if method == "POST" || method == "PUT" {
			req.SetBodyString("{}")
		}
		if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return resp
	}

	resp := send("OPTIONS", "api.com", "Origin", "https://app.example", "Access-Control-Request-Method", "PUT",
		"Access-Control-Request-Headers", "content-type")
	if resp.StatusCode() != 204 || n.Load() != 0 {
		t.Fatalf("preflight: %d, origin saw %d requests", resp.StatusCode(), n.Load())
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "POST, PUT",
		"Access-Control-Allow-Headers": "content-type",
	} {
		if got := string(resp.Header.Peek(k)); got != want {
			t.Errorf("preflight %s: %q, want %q", k, got, want)
		}
	}
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		resp := send(m, "api.com", "Origin", "https://app.example")
		if resp.StatusCode() != 200 || string(resp.Body()) != m+" /items" {
			t.Errorf("%s: %d %q", m, resp.StatusCode(), resp.Body())
		}
		if got := resp.Header.PeekAll("Access-Control-Allow-Origin"); len(got) != 1 || string(got[0]) != "*" {
			t.Errorf("%s: Allow-Origin %q, want vkp's * alone", m, got)
		}
		if v := resp.Header.Peek("Vary"); v != nil {
			t.Errorf("%s: Vary %q: a * answer does not depend on Origin", m, v)
		}
	}
	// A browser's plain GET without Origin gets the same answer.
	if resp := send("GET", "api.com"); string(resp.Header.Peek("Access-Control-Allow-Origin")) != "*" {
		t.Errorf("GET without Origin: Allow-Origin %q", resp.Header.Peek("Access-Control-Allow-Origin"))
	}
	// Another host is not the route's: 404, no CORS.
	if resp := send("OPTIONS", "other.com", "Origin", "https://app.example", "Access-Control-Request-Method", "PUT"); resp.StatusCode() != 404 ||
		resp.Header.Peek("Access-Control-Allow-Origin") != nil {
		t.Errorf("other host: %d, Allow-Origin %q", resp.StatusCode(), resp.Header.Peek("Access-Control-Allow-Origin"))
	}
	if got := n.Load(); got != 5 {
		t.Errorf("origin saw %d requests, want 5 (the preflight and the other host's none)", got)
	}
}
