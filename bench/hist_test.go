package main

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func within(t *testing.T, name string, got, want time.Duration, tol float64) {
	t.Helper()
	diff := float64(got - want)
	if diff < 0 {
		diff = -diff
	}
	if diff > tol*float64(want) {
		t.Errorf("%s = %v, want %v ±%.1f%%", name, got, want, 100*tol)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	h := NewHistogram()
	// 1..1000 ms, once each, spread over shards: percentile p is p*10 ms.
	for i := 1; i <= 1000; i++ {
		h.Record(i, time.Duration(i)*time.Millisecond)
	}
	s := h.Summary()
	if s.Count != 1000 {
		t.Fatalf("count = %d, want 1000", s.Count)
	}
	tests := []struct {
		name      string
		got, want time.Duration
	}{
		{"p50", s.P50, 500 * time.Millisecond},
		{"p90", s.P90, 900 * time.Millisecond},
		{"p99", s.P99, 990 * time.Millisecond},
		{"p99.9", s.P999, 999 * time.Millisecond},
		{"max", s.Max, 1000 * time.Millisecond},
		{"mean", s.Mean, 500500 * time.Microsecond},
	}
	for _, tt := range tests {
		within(t, tt.name, tt.got, tt.want, 0.002) // 3 significant digits
	}
}

func TestHistogramTail(t *testing.T) {
	// 990 fast requests and 10 slow ones: p99 is fast, p99.9 is slow.
	h := NewHistogram()
	for i := 0; i < 990; i++ {
		h.Record(0, time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		h.Record(1, 2*time.Second)
	}
	s := h.Summary()
	within(t, "p50", s.P50, time.Millisecond, 0.002)
	within(t, "p99", s.P99, time.Millisecond, 0.002)
	within(t, "p99.9", s.P999, 2*time.Second, 0.002)
}

func TestHistogramClamps(t *testing.T) {
	h := NewHistogram()
	h.Record(0, 0)
	h.Record(0, 10*time.Minute)
	s := h.Summary()
	if s.Count != 2 {
		t.Fatalf("count = %d, want 2 (out-of-range values are clamped, not dropped)", s.Count)
	}
	within(t, "max", s.Max, 60*time.Second, 0.002)
}

func TestIntendedSendTime(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		i    int64
		rate float64
		want time.Duration
	}{
		{0, 500, 0},
		{1, 500, 2 * time.Millisecond},
		{500, 500, time.Second},
		{3, 3, time.Second},
		{7, 0.5, 14 * time.Second},
	}
	for _, tt := range tests {
		if got := intendedSendTime(start, tt.i, tt.rate).Sub(start); got != tt.want {
			t.Errorf("intendedSendTime(i=%d, rate=%g) = +%v, want +%v", tt.i, tt.rate, got, tt.want)
		}
	}
}

// stallingOrigin serves the origin pattern on an in-memory listener; the
// first request is held for stall.
func stallingOrigin(t *testing.T, size int, stall time.Duration) fasthttp.DialFunc {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	body := fillPattern(make([]byte, size))
	var first atomic.Bool
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if first.CompareAndSwap(false, true) {
			time.Sleep(stall)
		}
		ctx.SetBody(body)
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return func(string) (net.Conn, error) { return ln.Dial() }
}

// TestOpenLoopCountsQueueing is the coordinated-omission check: one
// connection, 100 req/s for 1 s, and the first response takes 800 ms. The
// ~80 requests due during the stall wait behind it, and their latency must
// count from when they were due (800 ms down to 0, so p50 ≈ 300 ms), not
// from when the stalled connection got round to them (≈ 0).
func TestOpenLoopCountsQueueing(t *testing.T) {
	dial := stallingOrigin(t, 64, 800*time.Millisecond)
	res, err := RunLoad(context.Background(), LoadConfig{
		Addr: "origin", Dial: dial, ExpectBodySize: 64,
		Conns: 1, Rate: 100, Duration: time.Second, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "open" || res.Started != 100 || res.OK != 100 {
		t.Fatalf("mode %s, started %d, OK %d; want open, 100, 100 (errors %s)", res.Mode, res.Started, res.OK, res.ErrorString())
	}
	l := res.Latency
	if l.P50 < 200*time.Millisecond || l.P50 > 400*time.Millisecond {
		t.Errorf("p50 = %v, want ≈300ms: latency must count from the intended send time", l.P50)
	}
	if l.Max < 750*time.Millisecond {
		t.Errorf("max = %v, want ≥ 750ms (the stalled request)", l.Max)
	}
}

// TestClosedLoopHidesQueueing shows the contrast: the same stall in a
// closed loop is one slow sample, because no request was due meanwhile.
func TestClosedLoopHidesQueueing(t *testing.T) {
	dial := stallingOrigin(t, 64, 300*time.Millisecond)
	res, err := RunLoad(context.Background(), LoadConfig{
		Addr: "origin", Dial: dial, ExpectBodySize: 64,
		Conns: 1, Duration: 500 * time.Millisecond, MaxRequests: 200,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "closed" || res.OK == 0 || res.OK > 200 {
		t.Fatalf("mode %s, OK %d; want closed, 1..200 (the count bound)", res.Mode, res.OK)
	}
	if res.Latency.P50 > 50*time.Millisecond {
		t.Errorf("closed-loop p50 = %v, want small", res.Latency.P50)
	}
}

func TestLoadErrorKinds(t *testing.T) {
	dial := stallingOrigin(t, 64, 0)
	tests := []struct {
		name string
		cfg  LoadConfig
		kind string
	}{
		{"status", LoadConfig{Addr: "origin", Dial: dial, ExpectStatus: 201, ExpectBodySize: -1}, errStatus},
		{"body", LoadConfig{Addr: "origin", Dial: dial, ExpectBodySize: 65}, errBody},
		{"connect", LoadConfig{Addr: closedAddr(t), ExpectBodySize: -1}, errConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Conns, cfg.Duration, cfg.MaxRequests, cfg.Timeout = 2, time.Second, 10, time.Second
			res, err := RunLoad(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != 0 || res.Errors[tt.kind] != 10 || res.ErrorCount() != 10 {
				t.Errorf("OK %d, errors %s; want 0 OK and 10 %s errors", res.OK, res.ErrorString(), tt.kind)
			}
		})
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
