package engine

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestSelectRule(t *testing.T) {
	lvl := func(name string) slog.Level { return dotnetLevels[name] }
	rules := []LogRule{
		{Category: "Vkp.*", Probability: 0.1},                                                 // 0
		{Category: "Vkp.Mirror", Probability: 0.2},                                            // 1
		{Category: "Vkp.Mirr*r", Probability: 0.3},                                            // 2: as long as 1, later
		{Category: "Vkp.Health", Level: lvl("information"), HasLevel: true, Probability: 0.4}, // 3
		{Category: "Vkp.Health", Level: lvl("warning"), HasLevel: true, Probability: 0.5},     // 4
		{EventID: 2, HasEvent: true, Probability: 0.6},                                        // 5
		{Category: "vkp.proxy", EventID: 3, HasEvent: true, Probability: 0.7},                 // 6
	}
	for _, tc := range []struct {
		cat   string
		level slog.Level
		ev    int
		want  int // index, -1: none
	}{
		{"Vkp.Access", slog.LevelInfo, 1, 0},
		{"Vkp.Mirror", slog.LevelInfo, 10, 2},  // equal rank: the later rule
		{"Vkp.Health", slog.LevelInfo, 20, 3},  // both level rules apply: the lower level wins
		{"Vkp.Health", slog.LevelWarn, 20, 4},  // Information does not apply above it
		{"Vkp.Health", slog.LevelError, 20, 0}, // neither level rule applies
		{"Vkp.Proxy", slog.LevelWarn, 3, 6},    // category beats none, case-insensitive
		{"Other", slog.LevelWarn, 2, 5},        // no category rule matches: the event rule
		{"Other", slog.LevelWarn, 9, -1},       // nothing applies: kept
	} {
		r := selectRule(rules, tc.cat, tc.level, tc.ev)
		got := -1
		for i := range rules {
			if r == &rules[i] {
				got = i
			}
		}
		if got != tc.want {
			t.Errorf("%s level %v event %d: rule %d, want %d", tc.cat, tc.level, tc.ev, got, tc.want)
		}
	}
	if !categoryMatch("Microsoft.AspNetCore.*", "microsoft.aspnetcore.hosting") || categoryMatch("A*Z", "AbcY") || !categoryMatch("A*Z", "AZ") {
		t.Error("categoryMatch")
	}
}

// With a fixed seed, a probability of 0.25 keeps about a quarter.
func TestSamplerProbability(t *testing.T) {
	s := NewSampler(SampleRandom)
	r := rand.New(rand.NewPCG(1, 2))
	s.Float64 = r.Float64
	s.SetRules([]LogRule{{Category: "Vkp.Access", Probability: 0.25}, {Category: "Vkp.Proxy", Probability: 0}})
	kept := 0
	for i := 0; i < 10000; i++ {
		if s.Keep(CatAccess, slog.LevelInfo, EvAccess) {
			kept++
		}
	}
	if kept < 2350 || kept > 2650 {
		t.Fatalf("kept %d of 10000 at 0.25", kept)
	}
	if s.Keep(CatProxy, slog.LevelWarn, 2) || !s.Keep(CatHealth, slog.LevelWarn, 20) {
		t.Fatal("probability 0 keeps, or an unruled category drops")
	}
	if !NewSampler(SampleNone).Keep(CatProxy, slog.LevelWarn, 2) {
		t.Fatal("mode none drops")
	}
}

func TestSamplingHandler(t *testing.T) {
	var buf bytes.Buffer
	s := NewSampler(SampleRandom)
	s.SetRules([]LogRule{{Category: "Vkp.Health", Probability: 0}, {EventID: 31, HasEvent: true, Probability: 0}})
	root := slog.New(NewSamplingHandler(slog.NewJSONHandler(&buf, nil), s))
	root.With("category", CatHealth).Warn("destination down")
	root.With("category", CatConfig).Error("reload rejected", "path", "x")
	root.With("category", CatConfig).Info("reload applied")
	root.With("category", CatMirror).Warn("mirror failures", "count", 3)
	out := buf.String()
	if strings.Contains(out, "destination down") || strings.Contains(out, "reload rejected") {
		t.Fatalf("sampled-out lines written:\n%s", out)
	}
	if !strings.Contains(out, `"category":"Vkp.Config","msg":"reload applied","event_id":30`) &&
		!strings.Contains(out, `"msg":"reload applied","category":"Vkp.Config","event_id":30`) {
		t.Fatalf("kept line without its category and event id:\n%s", out)
	}
	if !strings.Contains(out, `"event_id":10`) {
		t.Fatalf("mirror line:\n%s", out)
	}
}

func TestConfigSamplerRules(t *testing.T) {
	cfg := mustConfig(t, `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}}, "Clusters": {"c": {"Destinations": [{"Address": "a:1"}]}}},
	  "Logging": {"LogLevel": {"Default": "Debug"}},
	  "RandomProbabilisticSampler": {"Rules": [
	    {"CategoryName": "Microsoft.AspNetCore.*", "Probability": 0.25, "LogLevel": "Information"},
	    {"CategoryName": "System.*", "Probability": 0.1},
	    {"EventId": 1001, "Probability": 0.05}]}}`)
	want := []LogRule{
		{Category: "Microsoft.AspNetCore.*", Level: slog.LevelInfo, HasLevel: true, Probability: 0.25},
		{Category: "System.*", Probability: 0.1},
		{EventID: 1001, HasEvent: true, Probability: 0.05},
	}
	if len(cfg.LogRules) != 3 {
		t.Fatalf("rules %+v", cfg.LogRules)
	}
	for i := range want {
		if cfg.LogRules[i] != want[i] {
			t.Errorf("rule %d: %+v, want %+v", i, cfg.LogRules[i], want[i])
		}
	}
	for _, tc := range []struct{ rules, want string }{
		{`[{"CategoryName": "a*b*", "Probability": 1}]`, `RandomProbabilisticSampler.Rules[0].CategoryName: "a*b*" has more than one '*'`},
		{`[{"LogLevel": "Verbose"}]`, `Rules[0].LogLevel: "Verbose" is not a log level`},
		{`[{"Probability": 1.5}]`, `Rules[0].Probability: 1.5: a probability is from 0 to 1`},
		{`[{"Probablity": 0.5}]`, `Probablity`},
		{`{"a": 1}`, `expected an array of rules`},
	} {
		_, err := ParseConfig([]byte(`{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}}, "Clusters": {"c": {"Destinations": [{"Address": "a:1"}]}}},
		  "RandomProbabilisticSampler": {"Rules": ` + tc.rules + `}}`))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.rules, err, tc.want)
		}
	}
}

// accessLine runs one request through an engine whose logs go to a
// buffer and returns the access log lines.
func accessLines(t *testing.T, e *Engine, buf *syncBuffer, hdr ...string) []map[string]any {
	t.Helper()
	c, _ := serveEngine(t, e)
	do(t, c, "GET", "/a/b?token=secret", nil, hdr...)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	return lines
}

// syncBuffer is a log sink the server's goroutines write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLog(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello") })
	var buf syncBuffer
	log := slog.New(NewSamplingHandler(slog.NewJSONHandler(&buf, nil), NewSampler(SampleNone)))
	e := mustEngine(t, oneRoute("", origin), Options{Logger: log, AccessLog: true})
	lines := accessLines(t, e, &buf, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if len(lines) != 1 {
		t.Fatalf("%d access lines:\n%s", len(lines), buf.String())
	}
	l := lines[0]
	for k, want := range map[string]any{"category": CatAccess, "event_id": float64(1), "route": "r", "cluster": "c",
		"destination": "http://" + origin, "method": "GET", "path": "/a/b", "status": float64(200), "bytes_in": float64(0),
		"bytes_out": float64(5), "client": "127.0.0.1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"} {
		if l[k] != want {
			t.Errorf("%s = %v, want %v", k, l[k], want)
		}
	}
	if d, _ := l["duration_ms"].(float64); d <= 0 {
		t.Errorf("duration_ms %v", l["duration_ms"])
	}
	if _, ok := l["upstream_ms"].(float64); !ok {
		t.Errorf("upstream_ms %v", l["upstream_ms"])
	}
}

// --sampler trace: a request's lines only when its trace is sampled; the
// trace goes upstream with vkp's span as parent; a request without one
// starts one.
func TestTraceSampling(t *testing.T) {
	seen := make(chan string, 4)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) { seen <- string(ctx.Request.Header.Peek("traceparent")) })
	var buf syncBuffer
	log := slog.New(NewSamplingHandler(slog.NewJSONHandler(&buf, nil), NewSampler(SampleTrace)))
	e := mustEngine(t, oneRoute("", origin), Options{Logger: log, AccessLog: true, Sampler: NewSampler(SampleTrace)})
	c, _ := serveEngine(t, e)

	do(t, c, "GET", "/x", nil, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	up := <-seen
	if !strings.HasPrefix(up, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(up, "00f067aa0ba902b7") || !strings.HasSuffix(up, "-00") {
		t.Fatalf("upstream traceparent %q: want the trace id, vkp's span, the flags", up)
	}
	if strings.Contains(buf.String(), `"msg":"request"`) {
		t.Fatalf("an unsampled trace was logged:\n%s", buf.String())
	}
	do(t, c, "GET", "/x", nil, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	<-seen
	if strings.Count(buf.String(), `"msg":"request"`) != 1 {
		t.Fatalf("a sampled trace was not logged:\n%s", buf.String())
	}
	do(t, c, "GET", "/x", nil)
	up = <-seen
	var tc traceContext
	if !parseTraceparent([]byte(up), &tc) || !tc.sampled() {
		t.Fatalf("no traceparent made for a request without one: %q", up)
	}
	if strings.Count(buf.String(), `"msg":"request"`) != 2 {
		t.Fatalf("the started trace was not logged:\n%s", buf.String())
	}
}

func TestParseTraceparent(t *testing.T) {
	for in, ok := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":   true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x": false, // version 00 has no more fields
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x": true,  // a later version may
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":   false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":   false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":   false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":   false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":      false,
		"": false,
	} {
		var tc traceContext
		if got := parseTraceparent([]byte(in), &tc); got != ok {
			t.Errorf("%q: %v, want %v", in, got, ok)
		}
	}
}

// Logging.LogLevel.Default is read (VKProxy's names, any case); an
// unknown level is an error naming its path; a Logging section without it
// sets nothing.
func TestConfigLogLevel(t *testing.T) {
	route := `"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Paths": ["*"]}}}, "Clusters": {"c": {"Destinations": [{"Address": "http://127.0.0.1:1"}]}}}`
	cfg, err := ParseConfig([]byte(`{"Logging": {"LogLevel": {"Default": "debug", "Microsoft.AspNetCore": "Warning"}, "Console": {}}, ` + route + `}`))
	if err != nil || !cfg.HasLogLevel || cfg.LogLevel != slog.LevelDebug {
		t.Fatalf("%v %v %v", err, cfg.HasLogLevel, cfg.LogLevel)
	}
	cfg, err = ParseConfig([]byte(`{"Logging": {"Console": {}}, ` + route + `}`))
	if err != nil || cfg.HasLogLevel {
		t.Fatalf("%v %v", err, cfg.HasLogLevel)
	}
	_, err = ParseConfig([]byte(`{"Logging": {"LogLevel": {"Default": "Loud"}}, ` + route + `}`))
	if err == nil || !strings.Contains(err.Error(), "Logging.LogLevel.Default") || !strings.Contains(err.Error(), `"Loud" is not a log level`) {
		t.Fatalf("err %v", err)
	}
}
