package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// accessLines returns the access log lines (msg "request") in a JSON log.
func accessLines(log string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// waitLines waits until the log holds n access lines at least (or 5 s),
// then a moment longer for any straggler, and returns them.
func waitLines(p *proc, n int) []map[string]any {
	deadline := time.Now().Add(5 * time.Second)
	for len(accessLines(p.log())) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return accessLines(p.log())
}

// The seed's sampling config (configs/seed-sampling.json) with
// --sampler random: its Vkp.Access rule keeps about a quarter of the
// access lines; the other lines (listening, ...) have no rule and stay.
func TestE2ESamplerRandomSeedConfig(t *testing.T) {
	dest := origin(t, e2eOrigin)
	src, err := os.ReadFile("configs/seed-sampling.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "127.0.0.1:5000", dest, 1)
	p := startVKP(t, cfg, "--access-log", "--sampler", "random")
	const n = 400
	for i := 0; i < n; i++ {
		if s, _, _ := cacheGet(t, p.addr, "/r"); s != 200 {
			t.Fatalf("status %d", s)
		}
	}
	got := len(waitLines(p, 1))
	// Binomial(400, 0.25): mean 100, sd 8.7; this fails about once in
	// ten million runs when the rule works, and always when it is not
	// applied (400) or drops everything (0).
	if got < 55 || got > 145 {
		t.Fatalf("%d access lines of %d requests, want about %d", got, n, n/4)
	}
	if !strings.Contains(p.log(), `"msg":"listening"`) {
		t.Fatalf("a line no rule names was dropped:\n%s", p.log())
	}
}

// --sampler trace: a request's access line is written when its W3C
// traceparent is sampled, not when it is not; the traceparent goes
// upstream with the same trace id (and vkp's own span as parent). A
// request without one starts a sampled trace (a root span is recorded,
// as with a parent-based, always-on sampler): its line is kept and names
// the trace id the origin got.
func TestE2ESamplerTrace(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // path -> traceparent the origin got
	dest := origin(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		seen[string(ctx.Path())] = string(ctx.Request.Header.Peek("traceparent"))
		mu.Unlock()
		ctx.SetBodyString("ok")
	})
	p := startVKP(t, e2eConfig(dest), "--access-log", "--sampler", "trace")
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
	)
	cacheGet(t, p.addr, "/api/sampled", "traceparent", "00-"+traceID+"-"+parent+"-01")
	cacheGet(t, p.addr, "/api/unsampled", "traceparent", "00-"+traceID+"-"+parent+"-00")
	cacheGet(t, p.addr, "/api/none")
	lines := waitLines(p, 1)
	var paths []string
	for _, l := range lines {
		paths = append(paths, l["path"].(string))
	}
	if len(lines) != 2 || lines[0]["path"] != "/api/sampled" || lines[0]["trace_id"] != traceID || lines[1]["path"] != "/api/none" {
		t.Fatalf("access lines for %v (%v), want /api/sampled with trace id %s and /api/none", paths, lines, traceID)
	}
	mu.Lock()
	defer mu.Unlock()
	if tp := strings.Split(seen["/api/none"], "-"); len(tp) != 4 || tp[1] != lines[1]["trace_id"] || tp[3] != "01" {
		t.Errorf("/api/none: the origin got traceparent %q; the access line says trace %v", seen["/api/none"], lines[1]["trace_id"])
	}
	for _, path := range []string{"/api/sampled", "/api/unsampled"} {
		tp := strings.Split(seen[path], "-")
		if len(tp) != 4 || tp[1] != traceID || tp[2] == parent || len(tp[2]) != 16 {
			t.Errorf("%s: the origin got traceparent %q, want trace %s with vkp's span as parent", path, seen[path], traceID)
		}
	}
	if tp := strings.Split(seen["/api/none"], "-"); len(tp) != 4 || len(tp[1]) != 32 {
		t.Errorf("a request without traceparent: the origin got %q, want a new one", seen["/api/none"])
	}
}

// VKProxy's Logging.LogLevel.Default sets vkp's level when --log-level
// is not given (the seed's sampling config says Debug): a debug line (an
// event in the config's directory) is written; with --log-level info it
// is not.
func TestE2EConfigLogLevel(t *testing.T) {
	dest := origin(t, e2eOrigin)
	src, err := os.ReadFile("configs/seed-sampling.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "127.0.0.1:5000", dest, 1)
	for _, tc := range []struct {
		args  []string
		debug bool
	}{
		{nil, true},
		{[]string{"--log-level", "info"}, false},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "vkp.json")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startVKPAt(t, path, tc.args...)
		touch := func() bool {
			// A new event each time: the watcher may not be armed yet.
			if err := os.WriteFile(filepath.Join(dir, "other.txt"), []byte(time.Now().String()), 0o600); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			return strings.Contains(p.log(), `"msg":"config directory event"`)
		}
		if tc.debug {
			eventually(t, "a debug line", touch)
			continue
		}
		for i := 0; i < 10; i++ {
			if touch() {
				t.Fatalf("args %q: a debug line was written\n%s", tc.args, p.log())
			}
		}
	}
}
