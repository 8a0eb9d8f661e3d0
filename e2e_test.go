package main

// End-to-end tests of the built binary: real processes, real loopback
// sockets, real fasthttp origins.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func vkpBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vkp-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vkp")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// deadAddr returns a loopback address that refuses connections for the
// whole test: a socket is bound to it but never listens, so the port cannot
// be handed to another listener meanwhile.
func deadAddr(t *testing.T) string {
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

func origin(t *testing.T, h fasthttp.RequestHandler) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, MaxRequestBodySize: 128 << 20}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return ln.Addr().String()
}

type proc struct {
	addr   string // where it listens (it picked the port)
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	mu     *sync.Mutex
	done   chan error
}

func (p *proc) log() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// startVKP runs `vkp serve` on cfg listening on a port it picks (127.0.0.1:0)
// and waits for its "listening" line, which names the address.
func startVKP(t *testing.T, cfg string, args ...string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vkp.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startVKPAt(t, path, args...)
}

// startVKPAt is startVKP on a config file the test owns.
func startVKPAt(t *testing.T, path string, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	// The access log is off unless a test asks for it: under the load some
	// tests send, a line per request would bury what they look for.
	base := []string{"serve", "--listen", "127.0.0.1:0"}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--access-log") }) {
		base = append(base, "--access-log=false")
	}
	p.cmd = exec.Command(vkpBinary(t), append(base, args...)...)
	p.cmd.Env = append(os.Environ(), "VKP_CONFIG="+path)
	p.cmd.Stderr = lockedWriter{p.mu, p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	for i := 0; i < 500; i++ {
		for _, line := range strings.Split(p.log(), "\n") {
			var l struct{ Msg, Address string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Address != "" {
				p.addr = l.Address
				return p
			}
			// --log-format text
			if strings.Contains(line, "msg=listening ") {
				if _, a, ok := strings.Cut(line, " address="); ok {
					p.addr, _, _ = strings.Cut(a, " ")
					return p
				}
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("vkp exited early: %v\n%s", err, p.log())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("vkp did not say where it listens\n%s", p.log())
	return nil
}

// slowArrived tells a test waiting for it that a /slow request reached the
// origin.
var slowArrived = make(chan struct{}, 1)

func e2eOrigin(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) == "/teapot" {
		ctx.SetStatusCode(418)
		ctx.Response.Header.Set("X-Origin-Header", "tea")
		ctx.SetBodyString("short and stout")
		return
	}
	if string(ctx.Path()) == "/slow" {
		select {
		case slowArrived <- struct{}{}:
		default:
		}
		time.Sleep(time.Second)
	}
	sum := sha256.Sum256(ctx.PostBody())
	ctx.Response.Header.Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
	ctx.Response.Header.Set("X-Seen-Query", string(ctx.QueryArgs().QueryString()))
	ctx.Response.Header.Set("X-Seen-Header", string(ctx.Request.Header.Peek("X-Client")))
	ctx.Response.Header.Set("X-Seen-XFF", string(ctx.Request.Header.Peek("X-Forwarded-For")))
	fmt.Fprintf(ctx, "%s %s %d", ctx.Method(), ctx.Path(), len(ctx.PostBody()))
}

func e2eConfig(dest string) string {
	return `{
  // comments and trailing commas, as in VKProxy's appsettings files
  "ReverseProxy": {
    "Routes": {
      "api": {"Order": 0, "ClusterId": "main", "Timeout": "00:00:05",
              "Match": {"Hosts": ["*"], "Paths": ["/api*", "/teapot", "/slow"]},},
    },
    "Clusters": {
      "main": {"LoadBalancingPolicy": "RoundRobin", "Destinations": [{"Address": "http://` + dest + `"}]},
    },
  },
}`
}

func TestE2EProxying(t *testing.T) {
	dest := origin(t, e2eOrigin)
	p := startVKP(t, e2eConfig(dest))
	addr := p.addr
	c := &fasthttp.HostClient{Addr: addr, MaxResponseBodySize: 64 << 20}

	send := func(method, uri string, body []byte, hdr ...string) *fasthttp.Response {
		t.Helper()
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://" + addr + uri)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		req.SetBody(body)
		resp := &fasthttp.Response{}
		if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, uri, err, p.log())
		}
		return resp
	}

	resp := send("GET", "/api/items?b=2&a=1&a=3", nil, "X-Client", "e2e")
	if resp.StatusCode() != 200 || string(resp.Body()) != "GET /api/items 0" {
		t.Fatalf("GET: %d %q", resp.StatusCode(), resp.Body())
	}
	if q := string(resp.Header.Peek("X-Seen-Query")); q != "b=2&a=1&a=3" {
		t.Errorf("query arrived as %q", q)
	}
	if h := string(resp.Header.Peek("X-Seen-Header")); h != "e2e" {
		t.Errorf("client header arrived as %q", h)
	}
	if h := string(resp.Header.Peek("X-Seen-XFF")); h != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", h)
	}

	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>9)
	}
	sum := sha256.Sum256(body)
	resp = send("POST", "/api/upload", body)
	if resp.StatusCode() != 200 || string(resp.Header.Peek("X-Body-Sha256")) != hex.EncodeToString(sum[:]) {
		t.Fatalf("1 MiB POST did not arrive intact: %d %q", resp.StatusCode(), resp.Body())
	}
	if string(resp.Body()) != fmt.Sprintf("POST /api/upload %d", 1<<20) {
		t.Fatalf("POST body %q", resp.Body())
	}

	resp = send("GET", "/teapot", nil)
	if resp.StatusCode() != 418 || string(resp.Header.Peek("X-Origin-Header")) != "tea" || string(resp.Body()) != "short and stout" {
		t.Fatalf("origin status/headers not passed through: %d %q", resp.StatusCode(), resp.Body())
	}
	if resp := send("GET", "/nowhere", nil); resp.StatusCode() != 404 {
		t.Fatalf("no route: %d", resp.StatusCode())
	}
	if resp := send("POST", "/api/x", make([]byte, 2<<20)); resp.StatusCode() != 200 {
		t.Fatalf("2 MiB under the default 64 MiB limit: %d", resp.StatusCode())
	}
}

func TestE2EBodyLimit(t *testing.T) {
	dest := origin(t, e2eOrigin)
	addr := startVKP(t, e2eConfig(dest), "--max-request-body", "1MiB").addr
	// As curl does for big uploads: announce the body, wait for 100-continue.
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", 1<<20+1)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 413 ") {
		t.Fatalf("over the limit: got %q, want 413", buf[:n])
	}
	// At the limit exactly: accepted.
	resp := &fasthttp.Response{}
	req := &fasthttp.Request{}
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://" + addr + "/api/x")
	req.SetBody(make([]byte, 1<<20))
	if err := (&fasthttp.HostClient{Addr: addr}).DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("at the limit: %v %d", err, resp.StatusCode())
	}
}

func TestE2EGracefulShutdown(t *testing.T) {
	dest := origin(t, e2eOrigin)
	p := startVKP(t, e2eConfig(dest), "--grace", "10s")
	addr := p.addr

	result := make(chan error, 1)
	go func() {
		c := &fasthttp.HostClient{Addr: addr}
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + addr + "/slow")
		resp := &fasthttp.Response{}
		err := c.DoTimeout(req, resp, 10*time.Second)
		if err == nil && (resp.StatusCode() != 200 || string(resp.Body()) != "GET /slow 0") {
			err = fmt.Errorf("in-flight request got %d %q", resp.StatusCode(), resp.Body())
		}
		result <- err
	}()
	<-slowArrived // the request is now waiting on the origin
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil {
		t.Fatalf("in-flight request during shutdown: %v\n%s", err, p.log())
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("vkp exited with %v after SIGTERM, want 0\n%s", err, p.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("vkp did not exit after SIGTERM\n%s", p.log())
	}
	if _, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		t.Fatal("vkp still accepts connections after shutdown")
	}
	if !strings.Contains(p.log(), `"msg":"stopped"`) {
		t.Errorf("no stop log line:\n%s", p.log())
	}
}

func TestE2EValidate(t *testing.T) {
	bin := vkpBinary(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"good", []string{"validate", "--config", write("good.json", e2eConfig("127.0.0.1:1"))}, 0, []string{"ok (1 route, 1 cluster"}},
		{"seed mirror", []string{"validate", "--config", "configs/seed-mirror.json"}, 0, []string{"ok (1 route, 2 clusters, 0 warnings)"}},
		{"seed a/b", []string{"validate", "--config", "configs/seed-ab.json"}, 0, []string{"ok (2 routes"}},
		{"malformed", []string{"validate", "--config", write("bad.json", "{\n \"ReverseProxy\": {,\n}")}, 3, []string{"2:", "invalid JSON"}},
		{"several problems", []string{"validate", "--config", write("bad2.json", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "x", "Timeout": "1 minute"}}, "Clusters": {"c": {"Destinations": [{"Address": "nope"}]}}}}`)}, 3,
			[]string{"ReverseProxy.Routes.r.ClusterId", "ReverseProxy.Routes.r.Timeout", "ReverseProxy.Clusters.c.Destinations[0].Address", "3 problems"}},
		{"missing file", []string{"validate", "--config", filepath.Join(dir, "none.json")}, 3, []string{"no such file"}},
		{"missing flag", []string{"validate"}, 2, []string{"config"}},
		{"unknown flag", []string{"serve", "--nope"}, 2, []string{"nope"}},
		{"serve bad config", []string{"serve", "--config", filepath.Join(dir, "bad.json")}, 3, []string{"invalid JSON"}},
		{"version", []string{"version"}, 0, []string{"vkp "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, out)
			}
			for _, w := range tt.out {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestE2ESeedABConfig runs the seeds' A/B example (configs/seed-ab.json,
// comments and trailing commas included) with its destinations moved to free
// loopback ports: x-env: test goes to ClusterA, everything else to ClusterB.
func TestE2ESeedABConfig(t *testing.T) {
	src, err := os.ReadFile("configs/seed-ab.json")
	if err != nil {
		t.Fatal(err)
	}
	a := origin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("A") })
	b := origin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("B") })
	cfg := strings.NewReplacer("127.0.0.1:7930", a, "127.0.0.2:8989", b).Replace(string(src))
	if cfg == string(src) {
		t.Fatal("seed addresses not found in configs/seed-ab.json")
	}
	p := startVKP(t, cfg)
	addr := p.addr
	c := &fasthttp.HostClient{Addr: addr}
	for _, tc := range []struct {
		host, env, want string
		status          int
	}{
		{"api.com", "test", "A", 200},
		{"api.com", "TEST", "A", 200},
		{"api.com", "prod", "B", 200},
		{"api.com", "", "B", 200},
		{"api.com:8080", "test", "A", 200},
		{"other.com", "test", "Not Found\n", 404},
	} {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + addr + "/anything")
		req.Header.SetHost(tc.host)
		req.UseHostHeader = true
		if tc.env != "" {
			req.Header.Set("x-env", tc.env)
		}
		resp := &fasthttp.Response{}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, p.log())
		}
		if resp.StatusCode() != tc.status || string(resp.Body()) != tc.want {
			t.Errorf("Host %s x-env %q → %d %q, want %d %q", tc.host, tc.env, resp.StatusCode(), resp.Body(), tc.status, tc.want)
		}
		fasthttp.ReleaseRequest(req)
	}
}

// TestE2ESeedMirrorConfig runs the seeds' mirror example
// (configs/seed-mirror.json) with its destinations moved to loopback origins.
// The shadow gets every copy; the client only ever sees the main origin; the
// shutdown log reports the mirror counters.
func TestE2ESeedMirrorConfig(t *testing.T) {
	src, err := os.ReadFile("configs/seed-mirror.json")
	if err != nil {
		t.Fatal(err)
	}
	var shadowN, shadowBytes int64
	var mu sync.Mutex
	main := origin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("main") })
	shadow := origin(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		shadowN++
		shadowBytes += int64(len(ctx.PostBody()))
		mu.Unlock()
		ctx.SetStatusCode(503)
	})
	cfg := strings.NewReplacer("https://xxx.lt", "http://"+main, "http://xxx.org/", "http://"+shadow+"/").Replace(string(src))
	p := startVKP(t, cfg)
	addr := p.addr
	c := &fasthttp.HostClient{Addr: addr}
	body := make([]byte, 1<<20)
	for i := 0; i < 20; i++ {
		req := fasthttp.AcquireRequest()
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://" + addr + "/orders")
		req.Header.SetHost("api.com")
		req.UseHostHeader = true
		req.Header.Set("X-Forwarded-For", fmt.Sprint("10.0.0.", i))
		req.SetBody(body)
		resp := &fasthttp.Response{}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "main" {
			t.Fatalf("request %d: %v %d %q\n%s", i, err, resp.StatusCode(), resp.Body(), p.log())
		}
		fasthttp.ReleaseRequest(req)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n, b := shadowN, shadowBytes
		mu.Unlock()
		if n == 20 && b == 20<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow got %d copies, %d bytes; want 20, %d", n, b, 20<<20)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	if log := p.log(); !strings.Contains(log, `"msg":"mirror stopped"`) || !strings.Contains(log, `"sent":20`) {
		t.Fatalf("shutdown log lacks the mirror counters:\n%s", log)
	}
}

// TestE2EDeadShadow runs the seeds' mirror example with the shadow down:
// every client request succeeds, the log says once that the destination is
// down, and the shutdown counters account for every copy (a few failed,
// the rest dropped without a connection attempt).
func TestE2EDeadShadow(t *testing.T) {
	src, err := os.ReadFile("configs/seed-mirror.json")
	if err != nil {
		t.Fatal(err)
	}
	main := origin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("main") })
	dead := deadAddr(t)
	cfg := strings.NewReplacer("https://xxx.lt", "http://"+main, "http://xxx.org/", "http://"+dead+"/").Replace(string(src))
	p := startVKP(t, cfg)
	addr := p.addr
	c := &fasthttp.HostClient{Addr: addr}
	body := make([]byte, 1<<20)
	const n = 40
	for i := 0; i < n; i++ {
		req := fasthttp.AcquireRequest()
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://" + addr + "/orders")
		req.Header.SetHost("api.com")
		req.UseHostHeader = true
		req.SetBody(body)
		resp := &fasthttp.Response{}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "main" {
			t.Fatalf("request %d: %v %d %q\n%s", i, err, resp.StatusCode(), resp.Body(), p.log())
		}
		fasthttp.ReleaseRequest(req)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	log := p.log()
	st := mirrorStopped(t, log)
	if strings.Count(log, "mirror destination down") != 1 || st["due"] != n || st["sent"] != 0 ||
		st["failed"] < 5 || st["failed"]+st["dropped_down"] != n || st["dropped"] != st["dropped_down"] {
		t.Fatalf("counters %v; want %d due, at least 5 failed, the rest dropped as down, one 'down' log line:\n%s", st, n, log)
	}
}

// mirrorStopped reads the integer fields of the "mirror stopped" log line.
func mirrorStopped(t *testing.T, log string) map[string]int {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"msg":"mirror stopped"`) {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("mirror stopped line %q: %v", line, err)
		}
		st := map[string]int{}
		for k, v := range fields {
			if f, ok := v.(float64); ok {
				st[k] = int(f)
			}
		}
		return st
	}
	t.Fatalf("no mirror stopped line in the log:\n%s", log)
	return nil
}

// TestE2EMirrorFlags runs the binary with a one-copy in-flight limit and a
// one-copy queue in front of a shadow that never answers: of five copies one
// is sent, one waits, three are dropped; at SIGTERM the grace period runs
// out and the log counts the waiting copy and the one in flight as dropped
// at shutdown, so every copy is accounted for.
func TestE2EMirrorFlags(t *testing.T) {
	main := origin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("main") })
	gate := make(chan struct{})
	var arrived atomic.Int32
	shadow := origin(t, func(ctx *fasthttp.RequestCtx) { arrived.Add(1); <-gate })
	t.Cleanup(func() { close(gate) }) // before the shadow's own cleanup waits for it
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Hosts": ["*"], "Paths": ["*"]}, "Metadata": {"MirrorCluster": "shadow", "MirrorTimeout": "00:01:00"}}},
	  "Clusters": {"main": {"Destinations": [{"Address": "http://` + main + `"}]},
	               "shadow": {"Destinations": [{"Address": "http://` + shadow + `"}]}}}}`
	p := startVKP(t, cfg, "--mirror-inflight", "1", "--mirror-queue", "1", "--mirror-memory", "1MiB", "--grace", "500ms")
	addr := p.addr
	c := &fasthttp.HostClient{Addr: addr}
	post := func(i int) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://" + addr + "/orders")
		req.SetBodyString("copy")
		resp := &fasthttp.Response{}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "main" {
			t.Fatalf("request %d: %v %d %q\n%s", i, err, resp.StatusCode(), resp.Body(), p.log())
		}
	}
	post(0)
	deadline := time.Now().Add(5 * time.Second)
	for arrived.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the first copy did not reach the shadow\n%s", p.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i < 5; i++ {
		post(i)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	st := mirrorStopped(t, p.log())
	want := map[string]int{"due": 5, "sent": 0, "failed": 0, "dropped": 5, "flushed": 0, "dropped_at_shutdown": 2, "of_them_in_flight": 1}
	for k, v := range want {
		if st[k] != v {
			t.Fatalf("mirror stopped: %s = %d, want %d (all: %v)\n%s", k, st[k], v, st, p.log())
		}
	}
}

// `vkp validate` and `vkp serve` run the one load path: the same bad config
// gives the same problems, in the same order, each once.
func TestE2EValidateAndServeAgree(t *testing.T) {
	bin := vkpBinary(t)
	path := filepath.Join(t.TempDir(), "bad.json")
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "x", "Timeout": "1 minute", "Match": {"Statement": "Header('a') = "},
	                   "Metadata": {"MirrorCluster": "nope", "MirrorPercent": "200", "Cache": "Memory"}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "nope"}]}}}}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	problems := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		out, _ := cmd.CombinedOutput()
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "error: ") || strings.HasPrefix(l, "warning: ") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n"), cmd.ProcessState.ExitCode()
	}
	v, vc := problems("validate", "--config", path)
	s, sc := problems("serve", "--config", path, "--listen", "127.0.0.1:0")
	if vc != 3 || sc != 3 {
		t.Fatalf("exit codes validate %d, serve %d; want 3 and 3", vc, sc)
	}
	if v != s {
		t.Fatalf("validate and serve disagree:\nvalidate:\n%s\nserve:\n%s", v, s)
	}
	for _, w := range []string{"Routes.r.ClusterId", "Routes.r.Timeout", "Routes.r.Match.Statement", "Clusters.c.Destinations[0].Address"} {
		if n := strings.Count(v, w); n != 1 {
			t.Errorf("%q reported %d times:\n%s", w, n, v)
		}
	}
}
