package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Closed-loop GETs can be driven by wrk (--load wrk) instead of the Go
// client. On two cores the load generator shares the CPUs with the proxy
// it measures, and how it shares them moves the ratios: the Go client
// (fasthttp's HostClient, a goroutine per connection) spends about 28 us
// of CPU per cache hit it asks for, wrk -t1 (one thread, epoll) about 17,
// but one busy wrk thread next to a proxy's two busy workers makes both
// proxies pay more per request, vkp more than nginx (BENCHMARKS.md). wrk
// does not check bodies: the Go client's warm-up before each cell does.
// The default stays the Go client, which every earlier number used.

// Load tools.
const (
	toolGo  = "go"
	toolWrk = "wrk"
)

// loadTool resolves --load: "auto" is wrk when it is installed.
func loadTool(name string) (string, error) {
	switch name {
	case "", "auto":
		if _, err := exec.LookPath("wrk"); err == nil {
			return toolWrk, nil
		}
		return toolGo, nil
	case toolGo:
		return toolGo, nil
	case toolWrk:
		if _, err := exec.LookPath("wrk"); err != nil {
			return "", errors.New("bench: --load wrk: wrk is not installed")
		}
		return toolWrk, nil
	}
	return "", fmt.Errorf("bench: --load %q: want auto, go or wrk", name)
}

// wrkFits reports whether wrk can run cfg: a closed loop of GETs over TCP
// without a request body, whose only expected status is 200, read whole.
func wrkFits(cfg *LoadConfig) bool {
	return cfg.Rate <= 0 && cfg.BodySize == 0 && !cfg.Stream && cfg.Dial == nil &&
		(cfg.Method == "" || cfg.Method == "GET") && (cfg.ExpectStatus == 0 || cfg.ExpectStatus == 200) &&
		cfg.MaxRequests <= 0
}

// wrkScript prints wrk's summary as one line of key=value pairs
// (latencies in microseconds).
const wrkScript = `done = function(s, lat, req)
  io.write(string.format("bench-result requests=%d duration=%d connect=%d read=%d write=%d status=%d timeout=%d mean=%f p50=%d p90=%d p99=%d p999=%d max=%d\n",
    s.requests, s.duration, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,
    lat.mean, lat:percentile(50), lat:percentile(90), lat:percentile(99), lat:percentile(99.9), lat.max))
end
`

// runWrk runs cfg (see wrkFits) with `wrk -t1`.
func runWrk(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	if !wrkFits(&cfg) {
		return nil, errors.New("bench: wrk runs closed-loop GETs without bodies only")
	}
	if cfg.Conns <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("bench: conns and duration must be > 0")
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	dir, err := os.MkdirTemp("", "bench-wrk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "summary.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	secs := func(d time.Duration) string { return strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))) + "s" }
	// The hard stop covers the run plus one timeout, as RunLoad's does.
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.Timeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, "wrk", "-t1", "-c", strconv.Itoa(cfg.Conns), "-d", secs(cfg.Duration),
		"--timeout", secs(cfg.Timeout), "-s", script, "http://"+cfg.Addr+cfg.Path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench: wrk: %v\n%s%s", err, out, stderr.Bytes())
	}
	res, err := parseWrk(out, cfg.ExpectBodySize)
	if err != nil {
		return nil, err
	}
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "  %-34s %4s  ok %8d  %8.0f rps  errors %s  (wrk)\n",
			cfg.Label, res.Elapsed.Round(time.Second), res.OK, res.RPS(), res.ErrorString())
	}
	return res, ctx.Err()
}

// parseWrk reads wrkScript's line from wrk's output.
func parseWrk(out []byte, bodySize int) (*LoadResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "bench-result ")
		if !ok {
			continue
		}
		v := map[string]float64{}
		for _, kv := range strings.Fields(line) {
			k, s, _ := strings.Cut(kv, "=")
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("bench: wrk summary %q: %v", kv, err)
			}
			v[k] = f
		}
		us := func(k string) time.Duration { return time.Duration(v[k] * float64(time.Microsecond)) }
		n := int64(v["requests"])
		res := &LoadResult{
			Tool:    toolWrk,
			Mode:    "closed",
			Elapsed: us("duration"),
			Started: n,
			OK:      n - int64(v["status"]),
			Errors:  map[string]int64{},
		}
		for k, kind := range map[string]string{"connect": errConnect, "timeout": errTimeout, "status": errStatus} {
			if e := int64(v[k]); e > 0 {
				res.Errors[kind] += e
			}
		}
		if e := int64(v["read"] + v["write"]); e > 0 {
			res.Errors[errIO] = e
		}
		if bodySize > 0 {
			res.BytesRecv = res.OK * int64(bodySize)
		}
		res.Latency = LatencySummary{Count: res.OK, Mean: us("mean"), P50: us("p50"), P90: us("p90"),
			P99: us("p99"), P999: us("p999"), Max: us("max")}
		return res, nil
	}
	return nil, fmt.Errorf("bench: no summary in wrk's output:\n%s", out)
}
