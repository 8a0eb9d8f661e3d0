package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseScenarios(t *testing.T) {
	tests := []struct {
		list, mode string
		want       []string // name, with "+open" for open loop
		err        bool
	}{
		{"get-small,post-1mib-mirror:open", "", []string{"get-small", "post-1mib-mirror+open"}, false},
		{"get-small, cache-hit", "open", []string{"get-small+open", "cache-hit+open"}, false},
		{"post-1mib-mirror:open", "closed", []string{"post-1mib-mirror"}, false},
		{defaultScenarios, "", nil, false},
		{"nope", "", nil, true},
		{"get-small:sideways", "", nil, true},
		{"get-small", "half", nil, true},
		{"", "", nil, true},
	}
	for _, tt := range tests {
		got, err := parseScenarios(tt.list, tt.mode)
		if (err != nil) != tt.err {
			t.Errorf("parseScenarios(%q, %q) error = %v, want error %v", tt.list, tt.mode, err, tt.err)
			continue
		}
		if tt.want == nil {
			continue
		}
		var names []string
		for _, s := range got {
			n := s.Name
			if s.Open {
				n += "+open"
			}
			names = append(names, n)
		}
		if strings.Join(names, ",") != strings.Join(tt.want, ",") {
			t.Errorf("parseScenarios(%q, %q) = %v, want %v", tt.list, tt.mode, names, tt.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	sc, _ := findScenario("post-1mib-mirror")
	res := func(ok int64, p99 time.Duration) *LoadResult {
		return &LoadResult{Elapsed: time.Second, OK: ok, Errors: map[string]int64{}, BodySent: ok * mib,
			Latency: LatencySummary{P50: time.Millisecond, P99: p99, P999: 2 * p99}}
	}
	cells := []Cell{
		{Scenario: sc, Proxy: "vkp", Load: res(2000, 10*time.Millisecond), Delivery: 1, Usage: usage{CPU: 1500 * time.Millisecond, PeakRSS: 30 << 20},
			OriginCPU: 500 * time.Millisecond, ShadowCPU: 400 * time.Millisecond},
		{Scenario: sc, Proxy: "nginx", Load: res(1000, 40*time.Millisecond), Delivery: 0.5, OriginMissing: mib},
		{Scenario: sc, Proxy: "haproxy", Status: "n/a (no mirroring)", Delivery: -1},
		{Scenario: scenarioTable[0], Proxy: "vkp", Status: "not implemented", Delivery: -1},
		{Scenario: scenarioTable[0], Proxy: "nginx", Load: res(5000, time.Millisecond), Delivery: -1},
	}
	cells[1].Load.Errors["status"] = 3
	var b strings.Builder
	writeTable(&b, cells)
	out := b.String()
	for _, want := range []string{
		"| post-1mib-mirror | vkp | 2000 | 1.00 ms | 10.0 ms | 20.0 ms | 0 | 100.0% | 30.0 MiB | 1.5 | — | — |",
		"| post-1mib-mirror | nginx | 1000 | 1.00 ms | 40.0 ms | 80.0 ms | 3 (status 3); origin missing 1.0 MiB | 50.0% |",
		"| 2.00× | 0.25× |",
		"| post-1mib-mirror | haproxy | n/a (no mirroring) |",
		"| get-small | vkp | not implemented |",
		"| get-small | nginx | 5000 | 1.00 ms | 1.00 ms | 2.00 ms | 0 | — | 0 B | 0.0 | — | — |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	b.Reset()
	writeNotes(&b, cells, nil)
	if want := "- post-1mib-mirror / vkp: shadow got 0 B of 2.0 GiB sent; CPU per request: proxy 750 µs, origin 250 µs, shadow 200 µs"; !strings.Contains(b.String(), want) {
		t.Errorf("missing %q in\n%s", want, b.String())
	}
	if !cells[1].failed() || cells[0].failed() {
		t.Errorf("failed(): nginx (errors, missing bytes) must fail, vkp must not")
	}
}

// A pinned proxy that left its CPU idle in a closed loop was waiting for
// the client: the note says so; a busy one, an unpinned one or an open
// loop gets no such note.
func TestWriteNotesClientBound(t *testing.T) {
	closed := scenarioTable[0]
	res := &LoadResult{Elapsed: 5 * time.Second, OK: 100000, Errors: map[string]int64{}}
	cells := []Cell{
		{Scenario: closed, Proxy: "vkp", Load: res, Usage: usage{CPU: 4 * time.Second}, PinnedCPUs: 1, Delivery: -1},
		{Scenario: closed, Proxy: "nginx", Load: res, Usage: usage{CPU: 4900 * time.Millisecond}, PinnedCPUs: 1, Delivery: -1},
		{Scenario: closed, Proxy: "haproxy", Load: res, Usage: usage{CPU: time.Second}, Delivery: -1},
		{Scenario: closed, Proxy: "traefik", Load: res, Usage: usage{CPU: 9 * time.Second}, PinnedCPUs: 2, Delivery: -1},
	}
	var b strings.Builder
	writeNotes(&b, cells, nil)
	out := b.String()
	if want := "- get-small / vkp: the proxy was busy 80% of its CPUs: the load generator, not the proxy, set this rate"; !strings.Contains(out, want) {
		t.Errorf("missing %q in\n%s", want, out)
	}
	if strings.Count(out, "busy") != 1 {
		t.Errorf("only vkp was left waiting:\n%s", out)
	}
}

func TestFmtLatency(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{420 * time.Microsecond, "420 µs"},
		{2345 * time.Microsecond, "2.35 ms"},
		{23450 * time.Microsecond, "23.4 ms"},
		{234 * time.Millisecond, "234 ms"},
		{1500 * time.Millisecond, "1.50 s"},
	}
	for _, tt := range tests {
		if got := fmtLatency(tt.d); got != tt.want {
			t.Errorf("fmtLatency(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestMedianRange(t *testing.T) {
	for _, tc := range []struct {
		in          []float64
		med, lo, hi float64
	}{
		{nil, 0, 0, 0},
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		if m, lo, hi := medianRange(tc.in); m != tc.med || lo != tc.lo || hi != tc.hi {
			t.Errorf("medianRange(%v) = %v %v %v, want %v %v %v", tc.in, m, lo, hi, tc.med, tc.lo, tc.hi)
		}
	}
}
