package engine

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Regression: a client's "Connection: Content-Length" deleted the copy's
// Content-Length after its body stream had set it, so the copy went out as
// "Content-Length: 0" followed by the body, which the shadow read as a second
// request of the client's making.
func TestMirrorConnectionHeaderCannotReframeTheCopy(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	shadowAddr := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		seen = append(seen, string(ctx.Method())+" "+string(ctx.RequestURI())+" "+strconv.Itoa(len(ctx.PostBody())))
		mu.Unlock()
	})
	var mainGot atomic.Int64
	mainAddr := startOrigin(t, func(ctx *fasthttp.RequestCtx) { mainGot.Store(int64(len(ctx.PostBody()))) })
	e := mustEngine(t, mirrorConfig(mainAddr, `"MirrorCluster": "shadow0"`, shadowAddr), Options{})
	c, _ := serveEngine(t, e)
	pad := strings.Repeat("A", 16<<10)
	inner := "POST /smuggled HTTP/1.1\r\nHost: internal\r\nContent-Length: " + strconv.Itoa(len(pad)) + "\r\n\r\n" + pad
	// A long Connection value must not be cut into a protected name either.
	long := strings.Repeat("x", 250) + ", Content-Length"
	for _, conn := range []string{"Content-Length", "close, content-length, host", long} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		resp := do(t, c, "POST", "/ok", []byte(inner), "Connection", conn)
		if resp.StatusCode() != 200 || mainGot.Load() != int64(len(inner)) {
			t.Fatalf("Connection %.40q: main status %d, origin got %d of %d bytes", conn, resp.StatusCode(), mainGot.Load(), len(inner))
		}
		st := waitMirror(t, e, 5*time.Second)
		time.Sleep(50 * time.Millisecond) // a smuggled second request would arrive right after
		mu.Lock()
		got := strings.Join(seen, "; ")
		mu.Unlock()
		if want := "POST /ok " + strconv.Itoa(len(inner)); got != want {
			t.Fatalf("Connection %.40q: shadow saw %q, want %q (%+v)", conn, got, want, st)
		}
	}
}

// Regression: answers without a body (HEAD copies, 204, 304) have no body
// stream; discarding a nil stream panicked, counted the copy as failed and
// left the mirror pool's in-flight count raised for good.
func TestMirrorAnswersWithoutBody(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	var n atomic.Int64
	shadowAddr := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		if ctx.IsPost() {
			ctx.SetStatusCode(fasthttp.StatusNoContent)
		}
	})
	e := mustEngine(t, mirrorConfig(startOrigin(t, mainOrigin), `"MirrorCluster": "shadow0"`, shadowAddr), Options{Logger: logger})
	c, _ := serveEngine(t, e)
	for i := 0; i < 3; i++ {
		do(t, c, "HEAD", "/h", nil)
		do(t, c, "POST", "/p", []byte("body"))
	}
	st := waitMirror(t, e, 5*time.Second)
	if st.Sent != 6 || st.Failed != 0 || n.Load() != 6 {
		t.Fatalf("6 copies answered without a body: %+v, shadow saw %d", st, n.Load())
	}
	for _, cl := range e.Current().Clusters {
		for _, d := range cl.mirrorDests {
			if v := d.hs.inflight.Load(); v != 0 {
				t.Fatalf("mirror pool %s in flight %d after every copy was answered", d.Address, v)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "panicked") {
		t.Fatalf("log: %s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startIdleOrigin is startOrigin with a keep-alive idle timeout: the server
// closes connections idle for longer than idle.
func startIdleOrigin(t testing.TB, h fasthttp.RequestHandler, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, IdleTimeout: idle, MaxRequestBodySize: 256 << 20}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return ln.Addr().String()
}

// Servers close idle keep-alive connections (Node after 5 s); fasthttp keeps
// them 10 s and retries only GET/HEAD/PUT. A POST, main or copy, that lands
// on such a connection must be sent again on a new one, not fail.
func TestStaleKeepAliveIsNotAFailure(t *testing.T) {
	var mainN, shadowN atomic.Int64
	mainAddr := startIdleOrigin(t, func(ctx *fasthttp.RequestCtx) { mainN.Add(1) }, 100*time.Millisecond)
	shadowAddr := startIdleOrigin(t, func(ctx *fasthttp.RequestCtx) { shadowN.Add(1) }, 100*time.Millisecond)
	e := mustEngine(t, mirrorConfig(mainAddr, `"MirrorCluster": "shadow0"`, shadowAddr), Options{})
	c, _ := serveEngine(t, e)
	const rounds = 4
	for i := 0; i < rounds; i++ {
		for _, body := range [][]byte{[]byte("small"), bytes.Repeat([]byte("b"), 256<<10)} {
			if resp := do(t, c, "POST", "/", body); resp.StatusCode() != 200 {
				t.Fatalf("round %d, %d-byte POST: status %d %s", i, len(body), resp.StatusCode(), resp.Body())
			}
		}
		waitMirror(t, e, 5*time.Second)
		time.Sleep(300 * time.Millisecond) // the origins close the idle connections
	}
	st := waitMirror(t, e, 5*time.Second)
	if st.Sent != 2*rounds || st.Failed != 0 || mainN.Load() != 2*rounds || shadowN.Load() != 2*rounds {
		t.Fatalf("main origin saw %d, shadow %d of %d; %+v", mainN.Load(), shadowN.Load(), 2*rounds, st)
	}
}

// Regression: a request that had entered its copy before Close and finished
// after Close had drained the queue left the copy queued forever, its memory
// charged, or sent it after Close returned. Within the grace period the copy
// is sent; once the grace period is over it is dropped and its charge returned.
func TestMirrorCloseWaitsForRequestsInService(t *testing.T) {
	mainAddr := startOrigin(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(200 * time.Millisecond) })
	for _, tt := range []struct {
		grace         time.Duration
		sent, dropped uint64
	}{{5 * time.Second, 1, 0}, {20 * time.Millisecond, 0, 1}} {
		sh := newShadow()
		e := mustEngine(t, mirrorConfig(mainAddr, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))), Options{})
		c, _ := serveEngine(t, e)
		done := make(chan struct{})
		go func() { do(t, c, "POST", "/", []byte("x")); close(done) }()
		for e.mirror.entering.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), tt.grace)
		e.Close(ctx)
		cancel()
		<-done
		st := e.MirrorStats()
		if st.Sent != tt.sent || st.Dropped != tt.dropped || uint64(sh.n.Load()) != tt.sent || st.Memory != 0 || st.Queued != 0 {
			t.Fatalf("grace %v, request in service during Close: %+v, shadow saw %d", tt.grace, st, sh.n.Load())
		}
	}
}

// Regression: a copy just handed to an idle sender when the grace period
// ended was neither in the queue close drains nor yet in flight, so it was
// counted nowhere (sent+failed+dropped < due in most rounds on two CPUs).
func TestMirrorCloseCountsCopyBeingHandedOver(t *testing.T) {
	mainAddr := startOrigin(t, mainOrigin)
	shAddr := startOrigin(t, newShadow().handler(0))
	const rounds = 100
	for i := 0; i < rounds; i++ {
		e := mustEngine(t, mirrorConfig(mainAddr, `"MirrorCluster": "shadow0"`, shAddr), Options{})
		ctx, tmpl := newProxyCtx()
		tmpl.Header.SetMethod("POST")
		tmpl.SetBody([]byte("x"))
		proxiedGET(e, ctx, tmpl)
		waitMirror(t, e, 10*time.Second) // a sender now waits, idle, on the queue
		grace, cancel := context.WithCancel(context.Background())
		cancel()
		proxiedGET(e, ctx, tmpl) // its copy goes to that sender...
		e.mirror.close(grace)    // ...while close gives up at once
		for e.mirror.senders.Load() != 0 || e.mirror.inflight.Load() != 0 {
			time.Sleep(time.Millisecond)
		}
		if st := e.MirrorStats(); st.Sent+st.Failed+st.Dropped != st.Due || st.Due != 2 || st.Memory != 0 {
			t.Fatalf("round %d: %+v; want the 2 copies each counted once and nothing charged", i, st)
		}
	}
}
