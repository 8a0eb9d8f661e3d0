package engine

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestBreakerStates(t *testing.T) {
	var b breaker
	now := int64(1) << 40
	up := func(at int64) (ok, probe bool) { t.Helper(); return b.acquire(at) }

	// Failures short of the trip, then an answer: the count starts over.
	for i := 0; i < breakerTrip-1; i++ {
		b.failure(false, now)
	}
	b.success(false)
	for i := 0; i < breakerTrip-1; i++ {
		if d := b.failure(false, now); d != 0 {
			t.Fatalf("failure %d after an answer put it down for %v", i+1, d)
		}
	}
	if ok, probe := up(now); !ok || probe {
		t.Fatalf("before the trip: acquire = %v, %v; want a plain send", ok, probe)
	}
	if d := b.failure(false, now); d != breakerBackoffMin {
		t.Fatalf("trip: backoff %v, want %v", d, breakerBackoffMin)
	}
	if d := b.failure(false, now); d != 0 {
		t.Fatalf("a copy sent before the trip extended the backoff to %v", d)
	}
	if ok, _ := up(now + int64(breakerBackoffMin) - 1); ok {
		t.Fatal("a copy went out during the backoff")
	}

	// One probe when the backoff has passed; each failed probe doubles it,
	// up to the cap.
	at, want := now+int64(breakerBackoffMin), 2*breakerBackoffMin
	for i := 0; i < 8; i++ {
		if ok, probe := up(at); !ok || !probe {
			t.Fatalf("round %d: acquire = %v, %v; want the probe", i, ok, probe)
		}
		if ok, _ := up(at); ok {
			t.Fatalf("round %d: a second copy went out while the probe was out", i)
		}
		if d := b.failure(true, at); d != want {
			t.Fatalf("round %d: failed probe: backoff %v, want %v", i, d, want)
		}
		at += int64(want)
		want = min(2*want, breakerBackoffMax)
	}

	// An answer to the probe brings it back; the next trip starts at the
	// minimum again.
	if ok, probe := up(at); !ok || !probe {
		t.Fatal("no probe after the last backoff")
	}
	if !b.success(true) {
		t.Fatal("an answered probe did not bring the destination back")
	}
	if ok, probe := up(at); !ok || probe {
		t.Fatalf("after the answer: acquire = %v, %v; want a plain send", ok, probe)
	}
	for i := 0; i < breakerTrip-1; i++ {
		b.failure(false, at)
	}
	if d := b.failure(false, at); d != breakerBackoffMin {
		t.Fatalf("trip after coming back: backoff %v, want %v", d, breakerBackoffMin)
	}
}

// A shadow that resets every connection gets breakerTrip attempts, then
// none while it is down (copies dropped and counted, the main path
// untouched); once it answers again, the probe after the backoff brings it
// back and copies flow.
func TestMirrorBreakerStopsAndResumes(t *testing.T) {
	var broken atomic.Bool
	var attempts, answered atomic.Int64
	broken.Store(true)
	sh := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		if broken.Load() {
			attempts.Add(1)
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
				c.Close()
			})
			return
		}
		answered.Add(1)
	})
	main := startOrigin(t, mainOrigin)
	var clock atomic.Int64 // the breakers' clock: the test moves it
	clock.Store(int64(time.Hour))
	e := mustEngine(t, mirrorConfig(main, `"MirrorCluster": "shadow0"`, sh), Options{Clock: clock.Load})
	c, _ := serveEngine(t, e)
	post := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			resp := do(t, c, "POST", "/x", []byte("payload"))
			if resp.StatusCode() != 200 || string(resp.Body()) != "main:/x" {
				t.Fatalf("main request: %d %q", resp.StatusCode(), resp.Body())
			}
			waitMirror(t, e, 10*time.Second) // one copy at a time: the count below is exact
		}
	}
	post(20)
	st := e.MirrorStats()
	if attempts.Load() != breakerTrip || st.Failed != breakerTrip || st.DroppedDown != 20-breakerTrip || st.Dropped != st.DroppedDown || st.Sent != 0 {
		t.Fatalf("down shadow: %d attempts, stats %+v; want %d failed, the rest dropped as down", attempts.Load(), st, breakerTrip)
	}

	broken.Store(false)
	post(3) // still inside the backoff: dropped without an attempt
	if answered.Load() != 0 || e.MirrorStats().DroppedDown != 23-breakerTrip {
		t.Fatalf("copies reached the shadow during the backoff: answered %d, %+v", answered.Load(), e.MirrorStats())
	}
	clock.Add(int64(breakerBackoffMin + time.Millisecond)) // the backoff has passed
	post(10)
	st = e.MirrorStats()
	if answered.Load() != 10 || st.Sent != 10 {
		t.Fatalf("after the backoff: shadow answered %d, stats %+v; want all 10 copies", answered.Load(), st)
	}
}

// In a cluster with a dead destination and a live one, the policy's picks
// of the dead one move to the live one once it is down.
func TestMirrorBreakerMovesToLiveDestination(t *testing.T) {
	sh := newShadow()
	live := startOrigin(t, sh.handler(0))
	main := startOrigin(t, mainOrigin)
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Hosts": ["*"], "Paths": ["*"]}, "Metadata": {"MirrorCluster": "shadow"}}},
	  "Clusters": {
	    "main": {"Destinations": [{"Address": "http://` + main + `"}]},
	    "shadow": {"LoadBalancingPolicy": "RoundRobin", "Destinations": [{"Address": "http://` + deadAddr(t) + `"}, {"Address": "http://` + live + `"}]}}}}`
	e := mustEngine(t, cfg, Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 30; i++ {
		if resp := do(t, c, "POST", "/x", []byte("payload")); resp.StatusCode() != 200 {
			t.Fatalf("main request %d: %d", i, resp.StatusCode())
		}
		waitMirror(t, e, 10*time.Second)
	}
	st := e.MirrorStats()
	if st.Failed != breakerTrip || st.Dropped != 0 || st.Sent != 30-breakerTrip || sh.n.Load() != 30-breakerTrip {
		t.Fatalf("stats %+v, live shadow got %d; want %d failed on the dead destination and the rest at the live one", st, sh.n.Load(), breakerTrip)
	}
}

// MirrorTimeout is per route, so is the breaker: a route whose copies time
// out on a slow endpoint does not stop another route's copies to the same
// shadow.
func TestMirrorBreakerIsPerRoute(t *testing.T) {
	sh := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
	})
	main := startOrigin(t, mainOrigin)
	cfg := `{"ReverseProxy": {
	  "Routes": {
	    "slow": {"ClusterId": "main", "Match": {"Paths": ["/slow"]}, "Metadata": {"MirrorCluster": "shadow", "MirrorTimeout": "50ms"}},
	    "fast": {"ClusterId": "main", "Match": {"Paths": ["/fast"]}, "Metadata": {"MirrorCluster": "shadow"}}},
	  "Clusters": {
	    "main": {"Destinations": [{"Address": "http://` + main + `"}]},
	    "shadow": {"Destinations": [{"Address": "http://` + sh + `"}]}}}}`
	e := mustEngine(t, cfg, Options{})
	c, _ := serveEngine(t, e)
	for _, path := range []string{"/slow", "/fast"} {
		for i := 0; i < 10; i++ {
			if resp := do(t, c, "POST", path, []byte("payload")); resp.StatusCode() != 200 {
				t.Fatalf("%s %d: %d", path, i, resp.StatusCode())
			}
			waitMirror(t, e, 10*time.Second)
		}
	}
	st := e.MirrorStats()
	if st.Failed != breakerTrip || st.DroppedDown != 10-breakerTrip || st.Sent != 10 {
		t.Fatalf("stats %+v: want the slow route's copies to time out %d times then be dropped, and all 10 of the fast route's sent", st, breakerTrip)
	}
}

// While one destination of a cluster is down, the policy picks among the
// others, so they share its traffic evenly.
func TestMirrorBreakerKeepsSharesEven(t *testing.T) {
	a, b := newShadow(), newShadow()
	liveA, liveB := startOrigin(t, a.handler(0)), startOrigin(t, b.handler(0))
	main := startOrigin(t, mainOrigin)
	cfg := `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "main", "Match": {"Paths": ["*"]}, "Metadata": {"MirrorCluster": "shadow"}}},
	  "Clusters": {
	    "main": {"Destinations": [{"Address": "http://` + main + `"}]},
	    "shadow": {"LoadBalancingPolicy": "RoundRobin", "Destinations": [
	      {"Address": "http://` + liveA + `"}, {"Address": "http://` + deadAddr(t) + `"}, {"Address": "http://` + liveB + `"}]}}}}`
	e := mustEngine(t, cfg, Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 60; i++ {
		if resp := do(t, c, "POST", "/x", []byte("payload")); resp.StatusCode() != 200 {
			t.Fatalf("main request %d: %d", i, resp.StatusCode())
		}
		waitMirror(t, e, 10*time.Second)
	}
	st := e.MirrorStats()
	na, nb := a.n.Load(), b.n.Load()
	if st.Failed != breakerTrip || st.Sent != 60-breakerTrip || na+nb != 60-breakerTrip || na-nb > 2 || nb-na > 2 {
		t.Fatalf("stats %+v; live destinations got %d and %d: want the dead one's share split evenly", st, na, nb)
	}
}
