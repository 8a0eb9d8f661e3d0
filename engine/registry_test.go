package engine

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// countingOrigin answers every request with "ok" and reports, per
// connection, when it opened and when the proxy closed it.
type countingOrigin struct {
	addr                 string
	opened, closed, reqs atomic.Int32
}

func newCountingOrigin(t *testing.T, hold <-chan struct{}) *countingOrigin {
	o := &countingOrigin{}
	o.addr = rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
		o.opened.Add(1)
		defer o.closed.Add(1)
		for {
			req, err := readReq(br)
			if err != nil {
				return
			}
			o.reqs.Add(1)
			if hold != nil && string(req.URI().Path()) == "/hold" {
				<-hold
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
		}
	})
	return o
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Apply keeps the warm connections of destinations both snapshots use,
// closes the pools of the ones it drops, and lets a request in flight on
// the old snapshot finish there.
func TestApplyKeepsAndRetiresPools(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	kept, idle, busy := newCountingOrigin(t, nil), newCountingOrigin(t, nil), newCountingOrigin(t, hold)
	cfg := func(withDropped bool) string {
		routes := `"k": {"ClusterId": "k", "Match": {"Paths": ["/k*"]}}`
		clusters := `"k": {"Destinations": [{"Address": "http://` + kept.addr + `"}]}`
		if withDropped {
			routes += `, "i": {"ClusterId": "i", "Match": {"Paths": ["/i*"]}}, "b": {"ClusterId": "b", "Match": {"Paths": ["/hold"]}}`
			clusters += `, "i": {"Destinations": [{"Address": "http://` + idle.addr + `"}]}, "b": {"Destinations": [{"Address": "http://` + busy.addr + `"}]}`
		}
		return `{"ReverseProxy": {"Routes": {` + routes + `}, "Clusters": {` + clusters + `}}}`
	}
	e := mustEngine(t, cfg(true), Options{})
	c, _ := serveEngine(t, e)
	for _, p := range []string{"/k", "/i"} {
		if resp := do(t, c, "GET", p, nil); resp.StatusCode() != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode())
		}
	}
	// A request on the old snapshot, held by its origin across the swap.
	done := make(chan int, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + c.Addr + "/hold")
		if err := (&fasthttp.HostClient{Addr: c.Addr}).Do(req, resp); err != nil {
			done <- -1
			return
		}
		done <- resp.StatusCode()
	}()
	waitFor(t, "the held request to reach its origin", func() bool { return busy.reqs.Load() == 1 })
	if err := e.Apply(mustConfig(t, cfg(false))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dropped destination's idle connection to close", func() bool { return idle.closed.Load() == 1 })
	if busy.closed.Load() != 0 {
		t.Fatal("the reload closed a connection in use")
	}
	release()
	if st := <-done; st != 200 {
		t.Fatalf("the request in flight across the reload got %d", st)
	}
	waitFor(t, "the in-flight request's connection to close once released", func() bool { return busy.closed.Load() == 1 })
	if resp := do(t, c, "GET", "/k", nil); resp.StatusCode() != 200 {
		t.Fatalf("kept route after the reload: %d", resp.StatusCode())
	}
	if n, m := kept.opened.Load(), kept.closed.Load(); n != 1 || m != 0 {
		t.Fatalf("the kept destination opened %d connections, %d closed; want its warm one reused", n, m)
	}
	if resp := do(t, c, "GET", "/i", nil); resp.StatusCode() != 404 {
		t.Fatalf("dropped route after the reload: %d", resp.StatusCode())
	}
	if len(e.reg.pools) != 1 || len(e.reg.hosts) != 1 {
		t.Fatalf("registry after the reload: %d pools, %d hosts; want 1 each", len(e.reg.pools), len(e.reg.hosts))
	}
}

// A config that fails to compile changes nothing, and leaves no pool of its
// own behind.
func TestApplyRejectsAndLeavesNothing(t *testing.T) {
	o := newCountingOrigin(t, nil)
	e := mustEngine(t, oneRoute("", o.addr), Options{})
	before := e.Current()
	bad := mustConfig(t, oneRoute("", "127.0.0.1:9"))
	bad.Routes[0].Statement = "Header('x') ="
	if err := e.Apply(bad); err == nil {
		t.Fatal("a config whose Statement does not compile was applied")
	}
	if e.Current() != before || len(e.reg.pools) != 1 {
		t.Fatalf("a rejected config changed the engine: snapshot kept %v, %d pools", e.Current() == before, len(e.reg.pools))
	}
}
