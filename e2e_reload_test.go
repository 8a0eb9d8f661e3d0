package main

// Live reload and health checks through the built binary: the seeds'
// rolling upgrade with no request lost, by file rename and by a ConfigMap
// style symlink swap; SIGHUP under load; many reloads under load.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// instance is an upstream the test can take out of service: its /health
// answers 500 when unhealthy. It counts the requests it served.
type instance struct {
	name    string
	addr    string
	healthy atomic.Bool
	served  atomic.Int64
}

func newInstance(t *testing.T, name string) *instance {
	in := &instance{name: name}
	in.healthy.Store(true)
	in.addr = origin(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			if !in.healthy.Load() {
				ctx.SetStatusCode(500)
			}
			return
		}
		in.served.Add(1)
		ctx.SetBodyString(name)
	})
	return in
}

// rollingConfig is the seed's rolling-upgrade config with the given
// instances, its health check every 100 ms.
func rollingConfig(ins ...*instance) string {
	var ds []string
	for _, in := range ins {
		ds = append(ds, `{"Address": "http://`+in.addr+`"}`)
	}
	return `{
"ReverseProxy": {
"Routes": {"b": {"Order": 0, "Match": {"Hosts": ["*"], "Paths": ["*"]}, "ClusterId": "ClusterB"}},
"Clusters": {"ClusterB": {
  "LoadBalancingPolicy": "RoundRobin",
  "HealthCheck": {"Active": {"Enable": true, "Interval": "00:00:00.1", "Policy": "Http", "Path": "/health"}},
  "Destinations": [` + strings.Join(ds, ", ") + `]}}}}`
}

// load sends requests from conns loops until stop is called, and reports
// how many were sent and how many failed (any error or status but 200).
type load struct {
	sent, failed atomic.Int64
	lastErr      atomic.Value
	stopc        chan struct{}
	wg           sync.WaitGroup
}

func startLoad(addr string, conns int) *load {
	l := &load{stopc: make(chan struct{})}
	for range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &fasthttp.HostClient{Addr: addr, ReadTimeout: 10 * time.Second}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/work")
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				err := c.Do(req, resp)
				l.sent.Add(1)
				if err != nil || resp.StatusCode() != 200 {
					l.failed.Add(1)
					l.lastErr.Store(fmt.Sprintf("%v %d %q", err, resp.StatusCode(), resp.Body()))
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) stop(t *testing.T) {
	close(l.stopc)
	l.wg.Wait()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed; last: %v", n, l.sent.Load(), l.lastErr.Load())
	}
	if l.sent.Load() == 0 {
		t.Error("no request was sent")
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quietFor reports whether in served nothing for d.
func quietFor(in *instance, d time.Duration) bool {
	n := in.served.Load()
	time.Sleep(d)
	return in.served.Load() == n
}

// rollingUpgrade runs the seeds' steps against a running vkp; write puts a
// new config in place.
func rollingUpgrade(t *testing.T, p *proc, write func(string)) {
	oldIn, newIn := newInstance(t, "old"), newInstance(t, "new")
	write(rollingConfig(oldIn))
	l := startLoad(p.addr, 4)
	eventually(t, "traffic on the old instance", func() bool { return oldIn.served.Load() > 20 })
	// 1. The new instance joins the cluster.
	write(rollingConfig(oldIn, newIn))
	eventually(t, "traffic to move partly to the new instance", func() bool { return newIn.served.Load() > 20 })
	// 2. The old one fails its health check: it gets no new traffic.
	oldIn.healthy.Store(false)
	eventually(t, "the old instance to get no traffic", func() bool { return quietFor(oldIn, 300*time.Millisecond) })
	// 3. It leaves the config.
	applied := strings.Count(p.log(), `"msg":"reload applied"`)
	write(rollingConfig(newIn))
	eventually(t, "the last reload", func() bool { return strings.Count(p.log(), `"msg":"reload applied"`) > applied })
	before := newIn.served.Load()
	eventually(t, "traffic on the new instance", func() bool { return newIn.served.Load() > before+50 })
	l.stop(t)
	if !strings.Contains(p.log(), `"msg":"destination down"`) || !strings.Contains(p.log(), `"destination":"http://`+oldIn.addr+`"`) {
		t.Errorf("no log line for the old instance going down:\n%s", p.log())
	}
}

func TestE2ERollingUpgradeByRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vkp.json")
	seed := newInstance(t, "seed")
	write := func(cfg string) {
		tmp := filepath.Join(dir, ".vkp.json.tmp")
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // as editors and config tools save
			t.Fatal(err)
		}
	}
	write(rollingConfig(seed))
	p := startVKPAt(t, path)
	rollingUpgrade(t, p, write)
}

func TestE2ERollingUpgradeByConfigMapSwap(t *testing.T) {
	// A Kubernetes ConfigMap volume: vkp.json -> ..data/vkp.json, ..data ->
	// ..<timestamp>; an update writes a new timestamped directory and swaps
	// the ..data link by rename.
	dir := t.TempDir()
	gen := 0
	write := func(cfg string) {
		gen++
		ts := filepath.Join(dir, "..2026_12_01_"+strconv.Itoa(gen))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "vkp.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	seed := newInstance(t, "seed")
	write(rollingConfig(seed))
	if err := os.Symlink("..data/vkp.json", filepath.Join(dir, "vkp.json")); err != nil {
		t.Fatal(err)
	}
	p := startVKPAt(t, filepath.Join(dir, "vkp.json"))
	rollingUpgrade(t, p, write)
}

// SIGHUP under load reloads (the file, rewritten in place without a rename,
// is picked up by the signal with watching off) and loses nothing.
func TestE2ESighupUnderLoad(t *testing.T) {
	a, b := newInstance(t, "a"), newInstance(t, "b")
	path := filepath.Join(t.TempDir(), "vkp.json")
	if err := os.WriteFile(path, []byte(rollingConfig(a)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startVKPAt(t, path, "--watch=false")
	l := startLoad(p.addr, 4)
	eventually(t, "traffic on a", func() bool { return a.served.Load() > 20 })
	if err := os.WriteFile(path, []byte(rollingConfig(b)), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // watching is off: nothing may happen yet
	if strings.Contains(p.log(), "reload applied") {
		t.Fatal("reloaded with --watch=false before any SIGHUP")
	}
	for range 5 {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, "traffic on b", func() bool { return b.served.Load() > 50 })
	eventually(t, "a quiet", func() bool { return quietFor(a, 300*time.Millisecond) })
	l.stop(t)
	select {
	case err := <-p.done:
		t.Fatalf("vkp exited on SIGHUP: %v\n%s", err, p.log())
	default:
	}
}

// 100 reloads under steady load: two valid configs alternating, an invalid
// one every fifth time. No request fails, and the process's goroutines and
// resident memory come back to where they were (a reload leaks nothing:
// pools, checkers and their goroutines go with the config that used them).
func TestE2EManyReloadsUnderLoad(t *testing.T) {
	a, b := newInstance(t, "a"), newInstance(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "vkp.json")
	write := func(cfg string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	cfgs := []string{rollingConfig(a), rollingConfig(a, b)}
	write(cfgs[0])
	p := startVKPAt(t, path, "--watch=false")
	l := startLoad(p.addr, 4)
	count := func(msg string) int { return strings.Count(p.log(), `"msg":"`+msg) }
	reload := func(cfg string, want string) {
		n := count(want)
		write(cfg)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for count(want) <= n {
			if time.Now().After(deadline) {
				log := p.log()
				t.Fatalf("no %q after 20 s; the log ends:\n%s", want, log[max(0, len(log)-3000):])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var g0, r0 int
	for i := range 100 {
		if i%5 == 4 {
			reload(`{"ReverseProxy": {"Routes": {"b": {"ClusterId": "nope"}}}}`, "reload rejected")
			continue
		}
		reload(cfgs[i%2], "reload applied")
		if i == 10 { // settled: the baseline
			g0, r0 = lastGoroutines(p.log()), rssKiB(t, p)
		}
	}
	reload(cfgs[1], "reload applied")
	time.Sleep(500 * time.Millisecond)
	g1, r1 := lastGoroutines(p.log()), rssKiB(t, p)
	l.stop(t)
	t.Logf("100 reloads under load: %d requests, %d failed; goroutines %d -> %d; RSS %d KiB -> %d KiB",
		l.sent.Load(), l.failed.Load(), g0, g1, r0, r1)
	if g1 > g0+2 {
		t.Errorf("goroutines grew from %d to %d over 90 reloads", g0, g1)
	}
	if r1 > r0+8<<10 {
		t.Errorf("RSS grew from %d KiB to %d KiB over 90 reloads", r0, r1)
	}
}

// lastGoroutines is the goroutine count of the last "reload applied" line.
func lastGoroutines(log string) int {
	i := strings.LastIndex(log, `"goroutines":`)
	if i < 0 {
		return -1
	}
	rest := log[i+len(`"goroutines":`):]
	n, _ := strconv.Atoi(rest[:strings.IndexAny(rest, ",}")])
	return n
}

func rssKiB(t *testing.T, p *proc) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}
