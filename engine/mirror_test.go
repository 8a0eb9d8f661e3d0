package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// shadow records what a mirror destination receives.
type shadow struct {
	mu      sync.Mutex
	n       atomic.Int64
	bytes   atomic.Int64
	sums    map[[32]byte]int
	headers []string // "Name: value" of selected headers, last request
	uri     string
	host    string
}

func newShadow() *shadow { return &shadow{sums: map[[32]byte]int{}} }

func (s *shadow) handler(delay time.Duration) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if delay > 0 {
			time.Sleep(delay)
		}
		sum := sha256.Sum256(ctx.PostBody())
		s.mu.Lock()
		s.sums[sum]++
		s.uri = string(ctx.RequestURI())
		s.host = string(ctx.Host())
		s.headers = s.headers[:0]
		for _, k := range []string{"X-Mirror", "X-Env", "X-Forwarded-For", "X-Forwarded-Host", "X-Hop", "Connection"} {
			if v := ctx.Request.Header.Peek(k); v != nil {
				s.headers = append(s.headers, k+": "+string(v))
			}
		}
		s.mu.Unlock()
		s.bytes.Add(int64(len(ctx.PostBody())))
		s.n.Add(1)
		ctx.SetStatusCode(500) // a failing shadow must not change the client's status
		ctx.SetBodyString("shadow body that nobody must see")
	}
}

func mirrorConfig(mainAddr, routeMeta string, shadows ...string) string {
	var clusters []string
	for i, s := range shadows {
		clusters = append(clusters, `"shadow`+string(rune('0'+i))+`": {"Destinations": [{"Address": "http://`+s+`"}]}`)
	}
	return `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Hosts": ["*"], "Paths": ["*"]}, "Metadata": {` + routeMeta + `}}},
	  "Clusters": {"main": {"Destinations": [{"Address": "http://` + mainAddr + `"}]}` + "," + strings.Join(clusters, ",") + `}}}`
}

// waitMirror waits until every due copy is accounted for and its charge
// returned: a copy is counted just before its job is released, so a test
// that reads Memory right after the counts could see the last charge.
func waitMirror(t *testing.T, e *Engine, timeout time.Duration) MirrorStats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := e.MirrorStats()
		if st.Sent+st.Failed+st.Dropped >= st.Due && st.Inflight == 0 && st.Queued == 0 && st.Memory == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror copies not settled after %v: %+v", timeout, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mainOrigin(ctx *fasthttp.RequestCtx) {
	sum := sha256.Sum256(ctx.PostBody())
	ctx.Response.Header.Set("X-Sum", string(appendHex(nil, sum[:8])))
	ctx.Response.Header.SetContentType("text/plain")
	ctx.SetBodyString("main:" + string(ctx.Path()))
}

func TestMirrorBodiesArriveIntact(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))), Options{})
	c, _ := serveEngine(t, e)
	plain, _ := serveEngine(t, mustEngine(t, oneRoute("", main), Options{}))

	for _, size := range []int{0, 1, 1 << 20, 16 << 20} {
		body := bytes.Repeat([]byte{0}, size)
		for i := range body {
			body[i] = byte(i ^ i>>8 ^ size)
		}
		method := "POST"
		if size == 0 {
			method = "GET"
		}
		got := do(t, c, method, "/up?x=1", body, "X-Hop", "1", "Connection", "X-Hop")
		want := do(t, plain, method, "/up?x=1", body)
		if got.StatusCode() != want.StatusCode() || !bytes.Equal(got.Body(), want.Body()) ||
			string(got.Header.Peek("X-Sum")) != string(want.Header.Peek("X-Sum")) || got.StatusCode() != 200 {
			t.Fatalf("size %d: mirrored response %d %q differs from unmirrored %d %q", size,
				got.StatusCode(), got.Body(), want.StatusCode(), want.Body())
		}
		waitMirror(t, e, 10*time.Second)
		sum := sha256.Sum256(body)
		sh.mu.Lock()
		n := sh.sums[sum]
		uri, hdrs := sh.uri, strings.Join(sh.headers, "|")
		sh.mu.Unlock()
		if n != 1 {
			t.Fatalf("size %d: the shadow got %d intact copies, want 1", size, n)
		}
		if uri != "/up?x=1" {
			t.Errorf("shadow URI %q", uri)
		}
		if strings.Contains(hdrs, "X-Hop") || !strings.Contains(hdrs, "X-Forwarded-For: 127.0.0.1") {
			t.Errorf("shadow headers %q: want hop-by-hop removed and X-Forwarded-For set", hdrs)
		}
	}
	st := e.MirrorStats()
	if st.Due != 4 || st.Sent != 4 || st.Failed != 0 || st.Dropped != 0 || st.BodyBytes != 1+1<<20+16<<20 {
		t.Fatalf("stats %+v", st)
	}
	if st.Memory != 0 {
		t.Fatalf("budget not released: %d bytes still charged", st.Memory)
	}
}

func TestMirrorHeadersHostAndBase(t *testing.T) {
	sh := newShadow()
	shadowAddr := startOrigin(t, sh.handler(0))
	main := startOrigin(t, mainOrigin)
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Hosts": ["*"], "Paths": ["*"]},
	      "Metadata": {"MirrorCluster": "shadow", "MirrorHeaders": "X-Mirror: 1; X-Env: shadow"}}},
	  "Clusters": {
	    "main": {"Destinations": [{"Address": "http://` + main + `/mainbase", "Host": "main.internal"}]},
	    "shadow": {"Destinations": [{"Address": "http://` + shadowAddr + `/v2/", "Host": "shadow.internal"}]}}}}`
	e := mustEngine(t, cfg, Options{})
	c, _ := serveEngine(t, e)
	resp := do(t, c, "GET", "/items?id=3", nil, "Host", "public.example")
	if resp.StatusCode() != 200 || string(resp.Body()) != "main:/mainbase/items" {
		t.Fatalf("main response %d %q", resp.StatusCode(), resp.Body())
	}
	waitMirror(t, e, 5*time.Second)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.uri != "/v2/items?id=3" || sh.host != "shadow.internal" {
		t.Errorf("shadow saw %s %s, want /v2/items?id=3 on shadow.internal (its own base and Host)", sh.host, sh.uri)
	}
	h := strings.Join(sh.headers, "|")
	for _, w := range []string{"X-Mirror: 1", "X-Env: shadow", "X-Forwarded-Host: public.example"} {
		if !strings.Contains(h, w) {
			t.Errorf("shadow headers %q lack %q", h, w)
		}
	}
}

func TestMirrorSamplingIsEven(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0", "MirrorPercent": 10`, startOrigin(t, sh.handler(0))), Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 500; i++ {
		do(t, c, "POST", "/", []byte("x"))
	}
	st := waitMirror(t, e, 5*time.Second)
	if st.Due != 50 || sh.n.Load() != 50 {
		t.Fatalf("10%% of 500: due %d, shadow got %d; want 50", st.Due, sh.n.Load())
	}
	rm := &routeMirror{perMyriad: 2500}
	picks := 0
	for i := 0; i < 8; i++ {
		if rm.sample() {
			picks++
		}
	}
	if picks != 2 {
		t.Fatalf("25%% of 8 picked %d, want exactly 2 (evenly spread)", picks)
	}
}

func TestMirrorMaxBodySizeSkips(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0", "MirrorMaxBodySize": "1KiB"`, startOrigin(t, sh.handler(0))), Options{})
	c, _ := serveEngine(t, e)
	do(t, c, "POST", "/", make([]byte, 1024))
	do(t, c, "POST", "/", make([]byte, 1025))
	st := waitMirror(t, e, 5*time.Second)
	if st.Skipped != 1 || st.Sent != 1 || sh.n.Load() != 1 {
		t.Fatalf("stats %+v, shadow %d: want the 1025-byte body skipped", st, sh.n.Load())
	}
}

func TestMirrorToSeveralClusters(t *testing.T) {
	a, b := newShadow(), newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0, shadow1"`,
		startOrigin(t, a.handler(0)), startOrigin(t, b.handler(20*time.Millisecond))), Options{})
	c, _ := serveEngine(t, e)
	body := bytes.Repeat([]byte("several"), 10000)
	for i := 0; i < 20; i++ {
		do(t, c, "POST", "/", body)
	}
	st := waitMirror(t, e, 5*time.Second)
	sum := sha256.Sum256(body)
	if a.sums[sum] != 20 || b.sums[sum] != 20 || st.Sent != 40 || st.Memory != 0 {
		t.Fatalf("a got %d, b got %d intact copies of 20; stats %+v", a.sums[sum], b.sums[sum], st)
	}
}

// A shadow that is down, resets connections or hangs costs the main path
// nothing: every main request succeeds and the counters say what happened.
func TestMirrorShadowFailuresNeverReachTheClient(t *testing.T) {
	reset := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		})
	})
	hang := startOrigin(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(3 * time.Second) })
	tests := []struct {
		name       string
		shadow     string
		meta       string
		wantFailed bool
	}{
		{"down", deadAddr(t), "", true},
		{"resetting", reset, "", true},
		{"hanging", hang, `, "MirrorTimeout": "00:00:00.2"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			main := startOrigin(t, mainOrigin)
			e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`+tt.meta, tt.shadow), Options{})
			c, _ := serveEngine(t, e)
			for i := 0; i < 30; i++ {
				resp := do(t, c, "POST", "/x", []byte("payload"))
				if resp.StatusCode() != 200 || string(resp.Body()) != "main:/x" {
					t.Fatalf("main request %d: %d %q", i, resp.StatusCode(), resp.Body())
				}
			}
			st := waitMirror(t, e, 10*time.Second)
			if st.Due != 30 || st.Failed+st.Dropped != 30 || st.Sent != 0 || st.Failed == 0 {
				t.Fatalf("stats %+v: want 30 due, all failed or dropped", st)
			}
		})
	}
}

func TestMirrorSlowShadowDoesNotDelayMain(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(500*time.Millisecond))), Options{})
	c, _ := serveEngine(t, e)
	start := time.Now()
	for i := 0; i < 10; i++ {
		do(t, c, "POST", "/", make([]byte, 64<<10))
	}
	// Ten sequential requests behind a 500 ms shadow: 5 s if the main path
	// waited for the copies; far less when it does not.
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("10 main requests took %v with a 500 ms shadow", el)
	}
	st := waitMirror(t, e, 10*time.Second)
	if st.Sent != 10 || sh.n.Load() != 10 {
		t.Fatalf("stats %+v, shadow got %d", st, sh.n.Load())
	}
	if st.LatencyMax < 500*time.Millisecond {
		t.Fatalf("max mirror latency %v, want ≥ 500ms (the shadow's delay)", st.LatencyMax)
	}
}

func TestMirrorMemoryBudgetDrops(t *testing.T) {
	// One sender (in-flight limit 1) and a shadow that holds its answers
	// until the gate opens: the first copy's body is released once written,
	// while its MirrorCopyCost stays charged until the answer; later copies
	// wait in the queue with their bodies charged, and what does not fit is
	// dropped.
	for _, tc := range []struct {
		budget     int64
		sent, drop uint64
	}{
		{3<<20 + 4*MirrorCopyCost, 4, 2},
		{3<<20 + 4*MirrorCopyCost - 1, 3, 3},
	} {
		gate := make(chan struct{})
		shadowAddr := startOrigin(t, func(ctx *fasthttp.RequestCtx) { <-gate })
		main := startOrigin(t, mainOrigin)
		e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, shadowAddr),
			Options{MirrorMemory: tc.budget, MirrorInflight: 1})
		c, _ := serveEngine(t, e)
		body := make([]byte, 1<<20)
		post := func() {
			if resp := do(t, c, "POST", "/", body); resp.StatusCode() != 200 {
				t.Fatalf("main %d", resp.StatusCode())
			}
		}
		post()
		deadline := time.Now().Add(10 * time.Second)
		for st := e.MirrorStats(); st.Memory != MirrorCopyCost || st.Inflight != 1; st = e.MirrorStats() {
			if time.Now().After(deadline) {
				close(gate)
				t.Fatalf("first copy: %+v; want its body released once written (Memory == MirrorCopyCost) while it waits for the answer", st)
			}
			time.Sleep(time.Millisecond)
		}
		for i := 0; i < 5; i++ {
			post()
		}
		held := e.MirrorStats()
		close(gate)
		if held.Dropped != tc.drop || uint64(held.Queued) != tc.sent-1 {
			t.Fatalf("budget %d, shadow holding the first copy, five more 1 MiB copies: %+v; want %d queued, %d dropped",
				tc.budget, held, tc.sent-1, tc.drop)
		}
		st := waitMirror(t, e, 10*time.Second)
		if st.Dropped != tc.drop || st.Sent != tc.sent || st.Memory != 0 {
			t.Fatalf("budget %d, after the gate opened: %+v; want %d sent, %d dropped, 0 charged", tc.budget, st, tc.sent, tc.drop)
		}
	}
}

func TestMirrorInflightFollowsLatency(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(200*time.Millisecond))), Options{})
	c, _ := serveEngine(t, e)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				do(t, c, "POST", "/", []byte("x"))
			}
		}()
	}
	wg.Wait()
	if st := e.MirrorStats(); st.Inflight < 20 {
		t.Logf("in flight right after the burst: %d", st.Inflight)
	}
	st := waitMirror(t, e, 10*time.Second)
	if st.Sent != 200 || st.Dropped != 0 {
		t.Fatalf("200 copies to a 200 ms shadow: %+v; want all sent, none dropped", st)
	}
}

func TestMirrorCloseFlushes(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(100*time.Millisecond))), Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 5; i++ {
		do(t, c, "POST", "/", []byte("x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	flushed, dropped, _ := e.mirror.close(ctx)
	if dropped != 0 || sh.n.Load() != 5 || e.MirrorStats().Sent != 5 {
		t.Fatalf("close: flushed %d dropped %d, shadow got %d", flushed, dropped, sh.n.Load())
	}
	// After close, new copies are dropped, the main path still works.
	if resp := do(t, c, "POST", "/", []byte("x")); resp.StatusCode() != 200 {
		t.Fatal("main path broken after mirror close")
	}
	if st := e.MirrorStats(); st.Dropped != 1 {
		t.Fatalf("copy after close: %+v", st)
	}
}

// Copies still being sent when the grace period ends are counted as dropped
// at shutdown, once: a send that ends later does not count them again.
func TestMirrorCloseCountsCopiesInFlight(t *testing.T) {
	gate := make(chan struct{})
	var gateOnce sync.Once
	open := func() { gateOnce.Do(func() { close(gate) }) }
	defer open()
	shadow := startOrigin(t, func(ctx *fasthttp.RequestCtx) { <-gate })
	e := mustEngine(t, mirrorConfig(startOrigin(t, mainOrigin), `"MirrorCluster": "shadow0"`, shadow), Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 3; i++ {
		do(t, c, "POST", "/", []byte("x"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.MirrorStats().Inflight != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("copies not in flight: %+v", e.MirrorStats())
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	flushed, dropped, inflight := e.mirror.close(ctx)
	if flushed != 0 || dropped != 3 || inflight != 3 {
		t.Fatalf("close = flushed %d, dropped %d, in flight %d; want 0, 3, 3", flushed, dropped, inflight)
	}
	open()
	for e.MirrorStats().Inflight != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("senders did not end once the shadow answered: %+v", e.MirrorStats())
		}
		time.Sleep(time.Millisecond)
	}
	if st := e.MirrorStats(); st.Due != 3 || st.Dropped != 3 || st.Sent != 0 || st.Failed != 0 || st.LatencyN != 0 {
		t.Fatalf("after the late answers: %+v; want the 3 copies counted once, as dropped", st)
	}
}

// The budget holds the copies the mirror holds: a request's body is not
// charged while the main request is still being served. Four 1 MiB requests
// held by the main origin at once, a budget for one copy: released one at a
// time, every copy is sent.
func TestMirrorBudgetNotChargedDuringMainRequest(t *testing.T) {
	release := make(chan struct{})
	defer close(release) // a failed test must not leave handlers waiting
	var arrived atomic.Int32
	main := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		arrived.Add(1)
		<-release
		mainOrigin(ctx)
	})
	sh := newShadow()
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))),
		Options{MirrorMemory: 2<<20 + MirrorCopyCost})
	c, _ := serveEngine(t, e)
	body := make([]byte, 1<<20)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp := do(t, c, "POST", "/", body); resp.StatusCode() != 200 {
				t.Errorf("main %d", resp.StatusCode())
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 requests reached the main origin", arrived.Load())
		}
		time.Sleep(time.Millisecond)
	}
	for i := uint64(1); i <= 4; i++ {
		release <- struct{}{}
		for st := e.MirrorStats(); st.Sent+st.Dropped < i || st.Memory != 0; st = e.MirrorStats() {
			if time.Now().After(deadline) {
				t.Fatalf("copy %d not settled: %+v", i, st)
			}
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	if st := e.MirrorStats(); st.Sent != 4 || st.Dropped != 0 {
		t.Fatalf("%+v; want 4 sent, 0 dropped", st)
	}
}

// Part 2 of the mirror's contract: the copy takes the request's body buffer
// (SwapBody) instead of copying it. After the handler the request holds an
// empty pooled buffer, and the shadow still gets every byte.
func TestMirrorTakesTheBodyBuffer(t *testing.T) {
	sh := newShadow()
	e := mustEngine(t, mirrorConfig(startOrigin(t, mainOrigin), `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))), Options{})
	ctx, _ := newProxyCtx()
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/take")
	ctx.Request.Header.SetHost("api.example.com")
	ctx.Request.SetBody(body)
	before := ctx.Request.Body()
	e.Handle(ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("main status %d", ctx.Response.StatusCode())
	}
	if after := ctx.Request.Body(); len(after) != 0 || (cap(after) > 0 && unsafe.SliceData(after) == unsafe.SliceData(before)) {
		t.Fatalf("after the handler the request still holds the body buffer (len %d, cap %d): it was copied, not taken", len(after), cap(after))
	}
	st := waitMirror(t, e, 10*time.Second)
	sh.mu.Lock()
	got := sh.sums[sha256.Sum256(body)]
	sh.mu.Unlock()
	if st.Sent != 1 || got != 1 {
		t.Fatalf("shadow did not get the body intact (%d matching copies): %+v", got, st)
	}
}

// A route's mirror settings: the defaults (every request, no size limit,
// DefaultMirrorTimeout) and each key read.
func TestMirrorSettings(t *testing.T) {
	tests := []struct {
		meta      string
		perMyriad uint64
		maxBody   int
		timeout   time.Duration
		headers   int
	}{
		{`"MirrorCluster": "main"`, 10000, 0, DefaultMirrorTimeout, 0},
		{`"MirrorCluster": "main", "MirrorPercent": 10, "MirrorMaxBodySize": "8MiB", "MirrorTimeout": "00:00:02", "MirrorHeaders": "X-Mirror: 1; X-Env: shadow"`,
			1000, 8 << 20, 2 * time.Second, 2},
		{`"MirrorCluster": "main", "MirrorPercent": "0.5", "MirrorTimeout": "00:00:00.250"`, 50, 0, 250 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		cfg := mustConfig(t, `{"ReverseProxy": {
		  "Routes": {"r": {"ClusterId": "main", "Metadata": {`+tt.meta+`}}},
		  "Clusters": {"main": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`)
		opts := Options{}
		opts.fill()
		snap, _, err := compile(cfg, newRegistry(&opts), &opts)
		if err != nil {
			t.Fatalf("%s: %v", tt.meta, err)
		}
		c := &compiler{cfg: cfg, reg: newRegistry(&opts), opts: &opts, snap: snap, mirrorDst: map[*Cluster][]*Destination{},
			seenPools: map[*upstream]bool{}, seenHosts: map[*hostState]bool{}}
		rm := c.compileMirror(snap.Routes[0])
		if rm.perMyriad != tt.perMyriad || rm.maxBody != tt.maxBody || rm.timeout != tt.timeout || len(rm.headers) != tt.headers {
			t.Errorf("%s: per10000 %d, max body %d, timeout %v, %d headers; want %d, %d, %v, %d",
				tt.meta, rm.perMyriad, rm.maxBody, rm.timeout, len(rm.headers), tt.perMyriad, tt.maxBody, tt.timeout, tt.headers)
		}
	}
}

// Copies beyond the in-flight limit wait in the queue; once it is full they
// are dropped and counted, and the main path answers every request.
func TestMirrorQueueFullDrops(t *testing.T) {
	gate := make(chan struct{})
	var gateOnce sync.Once
	open := func() { gateOnce.Do(func() { close(gate) }) }
	defer open()
	sh := newShadow()
	shadowAddr := startOrigin(t, func(ctx *fasthttp.RequestCtx) { <-gate; sh.handler(0)(ctx) })
	e := mustEngine(t, mirrorConfig(startOrigin(t, mainOrigin), `"MirrorCluster": "shadow0"`, shadowAddr),
		Options{MirrorInflight: 1, MirrorQueue: 2})
	c, _ := serveEngine(t, e)
	post := func() {
		if resp := do(t, c, "POST", "/", []byte("x")); resp.StatusCode() != 200 {
			t.Fatalf("main %d", resp.StatusCode())
		}
	}
	post()
	deadline := time.Now().Add(10 * time.Second)
	for e.MirrorStats().Inflight != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("first copy not in flight: %+v", e.MirrorStats())
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 4; i++ {
		post()
	}
	if st := e.MirrorStats(); st.Queued != 2 || st.Dropped != 2 {
		t.Fatalf("one copy in flight, four more: %+v; want 2 queued, 2 dropped", st)
	}
	open()
	if st := waitMirror(t, e, 10*time.Second); st.Sent != 3 || st.Dropped != 2 || sh.n.Load() != 3 {
		t.Fatalf("after the shadow answered: %+v, shadow got %d; want 3 sent, 2 dropped", st, sh.n.Load())
	}
}

// Failures are logged at most once a second with a count, not per copy: a
// burst of refused copies (ten dead destinations, five failures each before
// their breakers trip) gives one "mirror failures" line, not fifty.
func TestMirrorFailureLogIsRateLimited(t *testing.T) {
	mainAddr := startOrigin(t, mainOrigin) // first, so no dead port can become it
	var dests []string
	for i := 0; i < 10; i++ {
		dests = append(dests, `{"Address": "http://`+deadAddr(t)+`"}`)
	}
	var logs bytes.Buffer // slog's JSON handler serializes its writes
	e := mustEngine(t, `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Hosts": ["*"], "Paths": ["*"]}, "Metadata": {"MirrorCluster": "shadow"}}},
	  "Clusters": {"main": {"Destinations": [{"Address": "http://`+mainAddr+`"}]},
	               "shadow": {"Destinations": [`+strings.Join(dests, ",")+`]}}}}`,
		Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	c, _ := serveEngine(t, e)
	start := time.Now()
	for i := 0; i < 60; i++ {
		if resp := do(t, c, "POST", "/", []byte("x")); resp.StatusCode() != 200 {
			t.Fatalf("main %d", resp.StatusCode())
		}
	}
	st := waitMirror(t, e, 10*time.Second)
	elapsed := time.Since(start)
	lines := strings.Count(logs.String(), `"msg":"mirror failures"`)
	if st.Failed < 50 || st.Failed+st.Dropped != 60 {
		t.Fatalf("%+v; want every copy failed or dropped, at least 50 failed", st)
	}
	if lines < 1 || lines > 1+int(elapsed/time.Second) {
		t.Fatalf("%d failures in %v gave %d \"mirror failures\" lines; want 1 per second at most\n%s", st.Failed, elapsed, lines, logs.String())
	}
}

func TestMirrorConfigErrors(t *testing.T) {
	tests := []struct{ meta, want string }{
		{`"MirrorCluster": "nope"`, `Metadata.MirrorCluster: cluster "nope" is not defined`},
		{`"MirrorCluster": "main, MAIN"`, `Metadata.MirrorCluster: cluster "MAIN" is listed twice`},
		{`"MirrorCluster": "main", "MirrorPercent": 101`, "Metadata.MirrorPercent"},
		{`"MirrorCluster": "main", "MirrorPercent": "ten"`, "Metadata.MirrorPercent"},
		{`"MirrorCluster": "main", "MirrorMaxBodySize": "big"`, "Metadata.MirrorMaxBodySize"},
		{`"MirrorCluster": "main", "MirrorTimeout": "soon"`, "Metadata.MirrorTimeout"},
		{`"MirrorCluster": "main", "MirrorHeaders": "no colon here"`, "Metadata.MirrorHeaders"},
		{`"MirrorCluster": "main", "MirrorHeaders": "X-Mirror: 1; Content-Length: 0"`, `Metadata.MirrorHeaders: "Content-Length" cannot be set`},
		{`"MirrorCluster": "main", "MirrorHeaders": "transfer-encoding: chunked"`, `Metadata.MirrorHeaders: "transfer-encoding" cannot be set`},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(`{"ReverseProxy": {
		  "Routes": {"r": {"ClusterId": "main", "Metadata": {` + tt.meta + `}}},
		  "Clusters": {"main": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`))
		if err == nil || !strings.Contains(err.Error(), "ReverseProxy.Routes.r."+tt.want) {
			t.Errorf("%s: error %v, want it to name %q", tt.meta, err, tt.want)
		}
	}
}

// Regression: mirror copies once shared the main traffic's connection pool,
// so a slow shadow on the same address as a main cluster starved real
// requests into 502s.
func TestMirrorNeverTakesMainConnections(t *testing.T) {
	slow := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(100 * time.Millisecond)
		ctx.SetBodyString("ok")
	})
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Hosts": ["*"], "Paths": ["*"]}, "Metadata": {"MirrorCluster": "shadow"}}},
	  "Clusters": {
	    "main":   {"HttpClientConfig": {"MaxConnectionsPerServer": 4}, "Destinations": [{"Address": "http://` + slow + `"}]},
	    "shadow": {"HttpClientConfig": {"MaxConnectionsPerServer": 4}, "Destinations": [{"Address": "http://` + slow + `/shadow"}]}}}}`
	e := mustEngine(t, cfg, Options{})
	c, _ := serveEngine(t, e)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if resp := do(t, c, "POST", "/", []byte("x")); resp.StatusCode() != 200 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d of 40 main requests failed while mirroring to the same address", n)
	}
	st := waitMirror(t, e, 10*time.Second)
	if st.Sent != 40 {
		t.Fatalf("stats %+v", st)
	}
}

// Regression: a shadow's huge answer is streamed and discarded, not buffered.
func TestMirrorDiscardsLargeShadowResponses(t *testing.T) {
	big := bytes.Repeat([]byte("s"), 8<<20)
	shadow := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(big) })
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, shadow), Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 3; i++ {
		do(t, c, "POST", "/", []byte("x"))
	}
	if st := waitMirror(t, e, 10*time.Second); st.Sent != 3 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMirrorCloseStopsSenders(t *testing.T) {
	sh := newShadow()
	main := startOrigin(t, mainOrigin)
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, startOrigin(t, sh.handler(0))), Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 20; i++ {
		do(t, c, "POST", "/", []byte("x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.mirror.close(ctx)
	if n := e.mirror.senders.Load(); n != 0 {
		t.Fatalf("%d senders still running after close", n)
	}
	if st := e.MirrorStats(); st.Sent != 20 {
		t.Fatalf("stats %+v", st)
	}
}
