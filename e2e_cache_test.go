package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/internal/redistest"
)

// countingOrigin answers /faq* with max-age, /static/* with a 300 KiB body
// and no cache headers, anything else with max-age; it counts requests.
func countingOrigin(t *testing.T, n *atomic.Int64) string {
	big := strings.Repeat("s", 300<<10)
	return origin(t, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		p := string(ctx.Path())
		switch {
		case strings.HasPrefix(p, "/static/"):
			ctx.SetBodyString(big)
		default:
			ctx.Response.Header.Set("Cache-Control", "max-age=60")
			ctx.SetBodyString("page " + p)
		}
	})
}

// cacheGet sends a GET and returns status, Cache-Status and body.
func cacheGet(t *testing.T, addr, path string, hdr ...string) (int, string, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	// One Host whatever the port vkp listens on: the default key has it.
	req.Header.SetHost("app.example")
	req.UseHostHeader = true
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode(), string(resp.Header.Peek("Cache-Status")), string(resp.Body())
}

// The seeds' cache config as a user runs it: memory and disk routes, the
// disk cache surviving a restart.
func TestE2ECacheSeedConfig(t *testing.T) {
	var n atomic.Int64
	dest := countingOrigin(t, &n)
	src, err := os.ReadFile("configs/seed-cache.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(src), "127.0.0.1:9001", dest)
	dir := filepath.Join(t.TempDir(), "cache")
	p := startVKP(t, cfg, "--disk-cache", dir)

	if s, cs, body := cacheGet(t, p.addr, "/faq"); s != 200 || !strings.Contains(cs, "stored") || body != "page /faq" {
		t.Fatalf("first /faq: %d %q %q", s, cs, body)
	}
	if s, cs, _ := cacheGet(t, p.addr, "/faq"); s != 200 || !strings.HasPrefix(cs, "vkp; hit") || n.Load() != 1 {
		t.Fatalf("second /faq: %d %q, origin saw %d", s, cs, n.Load())
	}
	// CacheWhen: a request it refuses passes.
	if _, cs, _ := cacheGet(t, p.addr, "/api/x", "X-Env", "test"); cs != "vkp; fwd=bypass" {
		t.Fatalf("/api/x with x-env test: %q", cs)
	}
	// Disk: stored once the body is written (off the request path).
	if s, _, body := cacheGet(t, p.addr, "/static/app.js"); s != 200 || len(body) != 300<<10 {
		t.Fatalf("first /static: %d, %d bytes", s, len(body))
	}
	before := n.Load()
	eventually(t, "the disk entry", func() bool {
		_, cs, body := cacheGet(t, p.addr, "/static/app.js")
		return strings.HasPrefix(cs, "vkp; hit") && len(body) == 300<<10
	})
	if n.Load() != before {
		t.Fatalf("origin saw %d requests while the disk entry was written, want %d", n.Load(), before)
	}
	// A restart keeps the disk cache, not the memory one.
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	p2 := startVKP(t, cfg, "--disk-cache", dir)
	if s, cs, body := cacheGet(t, p2.addr, "/static/app.js"); s != 200 || !strings.HasPrefix(cs, "vkp; hit") || len(body) != 300<<10 {
		t.Fatalf("/static after a restart: %d %q %d bytes", s, cs, len(body))
	}
	if _, cs, _ := cacheGet(t, p2.addr, "/faq"); !strings.Contains(cs, "uri-miss") {
		t.Fatalf("/faq after a restart: %q (memory does not survive)", cs)
	}
}

// Two vkp instances on one Redis share entries; Redis dying turns the
// cache into misses, never into client errors; it comes back with Redis.
func TestE2ECacheRedisShared(t *testing.T) {
	srv := redistest.Start(t, redistest.FreePort(t))
	var n atomic.Int64
	dest := countingOrigin(t, &n)
	src, err := os.ReadFile("configs/seed-cache-redis.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(src), "127.0.0.1:9001", dest)
	a := startVKP(t, cfg, "--redis", srv.Addr())
	b := startVKP(t, cfg, "--redis", "redis://"+srv.Addr()+"/0")

	if s, cs, _ := cacheGet(t, a.addr, "/p?x=1"); s != 200 || !strings.Contains(cs, "stored") {
		t.Fatalf("first GET through a: %d %q", s, cs)
	}
	// The write is off the request path: wait for it, then b has it.
	eventually(t, "a's entry in Redis", func() bool { return srv.Do("EXISTS", "vkp:shared#app.example/p?x=1") == "1" })
	if s, cs, body := cacheGet(t, b.addr, "/p?x=1"); s != 200 || !strings.HasPrefix(cs, "vkp; hit") || body != "page /p" {
		t.Fatalf("GET through b: %d %q %q", s, cs, body)
	}
	if n.Load() != 1 {
		t.Fatalf("origin saw %d requests, want 1", n.Load())
	}

	srv.Kill()
	for i := 0; i < 5; i++ {
		start := time.Now()
		s, cs, body := cacheGet(t, a.addr, "/down"+strconv.Itoa(i))
		if s != 200 || body != "page /down"+strconv.Itoa(i) {
			t.Fatalf("with Redis down: %d %q %q", s, cs, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("with Redis down a request took %v", d)
		}
	}
	srv.Start()
	eventually(t, "caching to resume with Redis", func() bool {
		cacheGet(t, a.addr, "/back")
		_, cs, _ := cacheGet(t, a.addr, "/back")
		return strings.HasPrefix(cs, "vkp; hit")
	})
}

// A route on Redis without --redis is a config error at start, named.
func TestE2ECacheRedisNeedsFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vkp.json")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(mustRead(t, "configs/seed-cache-redis.json"), "127.0.0.1:9001", "127.0.0.1:1")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vkpBinary(t), "serve", "-c", path, "--listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "Routes.shared.Metadata.Cache") || !strings.Contains(string(out), "--redis") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
