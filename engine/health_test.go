package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The active checker's state machine, driven round by round with a scripted
// probe: Passes and Fails are consecutive counts; a destination's first
// result decides at once.
func TestActiveCheckStateMachine(t *testing.T) {
	fail := errors.New("refused")
	tests := []struct {
		name    string
		passes  int
		fails   int
		results []error // one per round
		states  []int32 // after each round
	}{
		{"first pass: up at once", 2, 3, []error{nil}, []int32{activeUp}},
		{"first fail: down at once", 2, 3, []error{fail}, []int32{activeDown}},
		{"Fails consecutive failures to go down", 1, 3, []error{nil, fail, fail, nil, fail, fail, fail},
			[]int32{activeUp, activeUp, activeUp, activeUp, activeUp, activeUp, activeDown}},
		{"Passes consecutive passes to come back", 2, 1, []error{fail, nil, fail, nil, nil},
			[]int32{activeDown, activeDown, activeDown, activeDown, activeUp}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gen atomic.Uint64
			hs := &hostState{gen: &gen}
			k := &checker{cluster: "c", cfg: ActiveHealthCheck{Passes: tc.passes, Fails: tc.fails, Policy: "Http"},
				log: slog.New(slog.NewTextHandler(io.Discard, nil)), ctx: context.Background()}
			target := &checkTarget{d: &Destination{Address: "a:1", hs: hs}, hs: hs}
			k.targets = []*checkTarget{target}
			hs.setActive(activeUnknown)
			for i, res := range tc.results {
				k.probe = func(context.Context, *checkTarget) error { return res }
				k.round()
				if got := hs.active.Load(); got != tc.states[i] {
					t.Fatalf("after round %d (%v): state %d, want %d", i+1, res, got, tc.states[i])
				}
			}
		})
	}
}

// The passive window: failures count only once the threshold of requests
// is in the window, old buckets fall out of it, and a destination over the
// limit is out until its reactivation period ends.
func TestPassiveWindow(t *testing.T) {
	var gen atomic.Uint64
	hs := &hostState{gen: &gen}
	d := &Destination{Address: "a:1", hs: hs}
	p := &passiveCheck{cfg: PassiveHealthCheck{DetectionWindowSize: time.Second, MinimalTotalCountThreshold: 10,
		FailureRateLimit: 0.5, ReactivationPeriod: 50 * time.Millisecond}, cluster: "c",
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), width: int64(time.Second) / passiveBuckets}
	at := func(ms int) int64 { return int64(time.Hour) + int64(ms)*int64(time.Millisecond) }
	for i := range 6 { // 6 failures, under the threshold of 10 requests
		p.record(d, true, at(i))
	}
	if !d.Available() {
		t.Fatal("out before the window held MinimalTotalCountThreshold requests")
	}
	for i := range 20 { // 20 successes, then 10 failures: 16 of 36 failed, under 50%
		p.record(d, false, at(10+i))
	}
	for i := range 10 {
		p.record(d, true, at(40+i))
	}
	if !d.Available() {
		t.Fatal("out at 16 failures of 36 requests, under a 50% limit")
	}
	// A second later the old requests have left the window: 12 failures
	// among the 12 requests in it.
	for i := range 12 {
		p.record(d, true, at(1200+i))
	}
	if d.Available() {
		t.Fatal("still in at 12 failures of 12 requests in the window")
	}
	g := gen.Load()
	waitFor(t, "the reactivation period to end", d.Available)
	if gen.Load() == g {
		t.Fatal("coming back did not bump the registry's generation")
	}
}

// Active Http checks with real origins: a destination whose /health answers
// 500 gets no traffic; when every one is down the route answers 503 naming
// the cluster; one that recovers gets traffic again.
func TestActiveChecksSteerTraffic(t *testing.T) {
	var aHealthy, bHealthy atomic.Bool
	aHealthy.Store(true)
	bHealthy.Store(true)
	origin := func(name string, healthy *atomic.Bool) string {
		return startOrigin(t, func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/health" {
				if !healthy.Load() {
					ctx.SetStatusCode(500)
				}
				if string(ctx.UserAgent()) != "vkp-health" {
					ctx.SetStatusCode(400)
				}
				return
			}
			ctx.SetBodyString(name)
		})
	}
	a, b := origin("a", &aHealthy), origin("b", &bHealthy)
	e := mustEngine(t, `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}},
	  "Clusters": {"c": {"LoadBalancingPolicy": "RoundRobin",
	    "HealthCheck": {"Active": {"Enable": true, "Interval": "00:00:00.05", "Policy": "Http", "Path": "/health"}},
	    "Destinations": [{"Address": "http://`+a+`"}, {"Address": "http://`+b+`"}]}}}}`, Options{})
	c, _ := serveEngine(t, e)
	hit := func() string {
		resp := do(t, c, "GET", "/", nil)
		if resp.StatusCode() != 200 {
			return resp.String()
		}
		return string(resp.Body())
	}
	waitFor(t, "both destinations up", func() bool {
		seen := map[string]bool{}
		for range 4 {
			seen[hit()] = true
		}
		return seen["a"] && seen["b"]
	})
	aHealthy.Store(false)
	waitFor(t, "a to be taken out", func() bool {
		for range 4 {
			if hit() != "b" {
				return false
			}
		}
		return true
	})
	bHealthy.Store(false)
	waitFor(t, "both out: 503 naming the cluster", func() bool {
		resp := do(t, c, "GET", "/", nil)
		return resp.StatusCode() == 503 && strings.Contains(string(resp.Body()), `cluster "c" has no available destination`)
	})
	aHealthy.Store(true)
	waitFor(t, "a back", func() bool { return hit() == "a" })
}

// A reload that keeps a cluster's check as it was keeps its checker (and
// the destinations' states); one that changes it starts a new checker.
func TestReloadKeepsOrRestartsCheckers(t *testing.T) {
	var probes atomic.Int32
	o := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			probes.Add(1)
		}
	})
	cfg := func(interval string) string {
		return `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}, "x": {"ClusterId": "c", "Match": {"Paths": ["/x"]}}},
		  "Clusters": {"c": {"HealthCheck": {"Active": {"Enable": true, "Interval": "` + interval + `", "Policy": "Http", "Path": "/health"}},
		    "Destinations": [{"Address": "http://` + o + `"}]}}}}`
	}
	e := mustEngine(t, cfg("00:01:00"), Options{})
	waitFor(t, "the first probe", func() bool { return probes.Load() == 1 })
	k := e.checkers["c"]
	if err := e.Apply(mustConfig(t, strings.Replace(cfg("00:01:00"), `"Paths": ["/x"]`, `"Paths": ["/y"]`, 1))); err != nil {
		t.Fatal(err)
	}
	if e.checkers["c"] != k || probes.Load() != 1 {
		t.Fatal("a reload that left the check alone restarted it")
	}
	if err := e.Apply(mustConfig(t, cfg("00:00:30"))); err != nil {
		t.Fatal(err)
	}
	if e.checkers["c"] == k {
		t.Fatal("a changed Interval kept the old checker")
	}
	waitFor(t, "the new checker's first probe", func() bool { return probes.Load() == 2 })
}

// A new destination whose check has not answered yet gets no traffic while
// a checked one is up.
func TestPendingDestinationWaitsForItsCheck(t *testing.T) {
	gate := make(chan struct{})
	var newHits atomic.Int32
	old := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("old") })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			<-gate // not ready yet
			return
		}
		newHits.Add(1)
	}}
	go srv.Serve(ln)                                  //nolint:errcheck
	t.Cleanup(func() { close(gate); srv.Shutdown() }) //nolint:errcheck
	cfg := func(addrs ...string) string {
		var ds []string
		for _, a := range addrs {
			ds = append(ds, `{"Address": "http://`+a+`"}`)
		}
		return `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}},
		  "Clusters": {"c": {"LoadBalancingPolicy": "RoundRobin",
		    "HealthCheck": {"Active": {"Enable": true, "Interval": "00:01:00", "Timeout": "00:00:30", "Policy": "Http", "Path": "/health"}},
		    "Destinations": [` + strings.Join(ds, ",") + `]}}}}`
	}
	e := mustEngine(t, cfg(old), Options{})
	c, _ := serveEngine(t, e)
	waitFor(t, "old up", func() bool { return !e.Current().Clusters["c"].dests[0].hs.pending() })
	if err := e.Apply(mustConfig(t, cfg(old, ln.Addr().String()))); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if resp := do(t, c, "GET", "/", nil); string(resp.Body()) != "old" {
			t.Fatalf("got %q", resp.Body())
		}
	}
	if newHits.Load() != 0 {
		t.Fatalf("the new destination got %d requests before its check answered", newHits.Load())
	}
}
