package main

import (
	"fmt"
	"strings"
	"time"
)

// Scenario is one workload, run identically against every proxy.
type Scenario struct {
	Name         string
	Method       string
	BodySize     int           // request body bytes
	RespSize     int           // origin response body bytes
	CacheControl string        // origin Cache-Control
	Mirror       bool          // route mirrors to a shadow origin
	ShadowDelay  time.Duration // shadow answers after this long
	ShadowDead   bool          // the shadow address refuses connections
	Cache        bool          // route caches responses
	Open         bool          // open loop at the run's --rate instead of closed loop
	// Conns replaces the run's --conns for this scenario's closed loop (the
	// large-body scenarios fix their concurrency: 4 downloads, 64 uploads).
	Conns int
	// Stream reads responses as a stream: the time to the first byte is
	// recorded, and the load generator holds no response body.
	Stream bool
	// Settle is how long the proxy is left idle after the load before its
	// resident memory is read again: what it keeps after a burst.
	Settle time.Duration
	// Cold measures from the proxy's first answer: no warm-up, a fresh
	// process (every cell starts its proxy anew).
	Cold bool
	// IdleBefore leaves the proxy idle this long after the warm-up, so
	// that the measured load is a step from nothing.
	IdleBefore time.Duration
	// Duration replaces the run's --duration for this scenario.
	Duration time.Duration
	// Log is the access log: "" none (every proxy's default here), "on"
	// (a line per request to a file), "sampled" (1 request in 100).
	Log string
}

// Label is the name shown in the table: "post-1mib-mirror" or
// "post-1mib-mirror (open 500/s)".
func (s Scenario) Label(rate float64) string {
	if s.Open {
		return fmt.Sprintf("%s (open %g/s)", s.Name, rate)
	}
	return s.Name
}

const mib = 1 << 20

var scenarioTable = []Scenario{
	{Name: "get-small", Method: "GET", RespSize: 128},
	{Name: "post-1mib", Method: "POST", BodySize: mib, RespSize: 128},
	{Name: "post-1mib-mirror", Method: "POST", BodySize: mib, RespSize: 128, Mirror: true},
	{Name: "post-1mib-mirror-slow", Method: "POST", BodySize: mib, RespSize: 128, Mirror: true, ShadowDelay: 100 * time.Millisecond},
	// The shadow hangs (answers after 10 minutes) or is down: the main path
	// must not notice, and the proxy's memory must stay bounded.
	{Name: "post-1mib-mirror-hang", Method: "POST", BodySize: mib, RespSize: 128, Mirror: true, ShadowDelay: 10 * time.Minute},
	{Name: "post-1mib-mirror-dead", Method: "POST", BodySize: mib, RespSize: 128, Mirror: true, ShadowDead: true},
	{Name: "cache-hit", Method: "GET", RespSize: 4096, CacheControl: "public, max-age=60", Cache: true},
	// get-small with an access log written to a file, on every request or
	// on 1 in 100 (vkp: --sampler random with a Vkp.Access rule; nginx:
	// split_clients on $request_id and access_log if=).
	{Name: "get-small-log", Method: "GET", RespSize: 128, Log: "on"},
	{Name: "get-small-log-sampled", Method: "GET", RespSize: 128, Log: "sampled"},
	// Large bodies: four 150 MiB downloads at once, 64 uploads of 16 MiB at
	// once. Peak and settled RSS and the time to first byte are the numbers.
	{Name: "get-150mib", Method: "GET", RespSize: 150 * mib, Conns: 4, Stream: true, Settle: 10 * time.Second},
	{Name: "post-16mib", Method: "POST", BodySize: 16 * mib, RespSize: 128, Conns: 64, Settle: 10 * time.Second},
	// Load that arrives at once: --rate 1 MiB POSTs a second (open loop)
	// for 3 s from a fresh process's first answer, or after 10 s idle
	// following the warm-up. Run several rounds: each cell is a new start.
	{Name: "cold-start", Method: "POST", BodySize: mib, RespSize: 128, Open: true, Cold: true, Duration: 3 * time.Second},
	{Name: "load-step", Method: "POST", BodySize: mib, RespSize: 128, Open: true, IdleBefore: 10 * time.Second, Duration: 3 * time.Second},
}

// defaultScenarios is the main scenarios closed-loop plus the open-loop
// variants of the mirror scenarios (and their no-mirror baseline), where
// queueing behind a slow shadow shows up as latency only if the sender keeps
// its schedule. The hang/dead shadow scenarios are run by name.
const defaultScenarios = "get-small,post-1mib,post-1mib-mirror,post-1mib-mirror-slow,cache-hit," +
	"post-1mib:open,post-1mib-mirror:open,post-1mib-mirror-slow:open"

// parseScenarios parses a comma-separated list of names, each optionally
// suffixed ":open" or ":closed". mode ("", "closed" or "open") overrides
// the suffixes when not empty.
func parseScenarios(list, mode string) ([]Scenario, error) {
	switch mode {
	case "", "closed", "open":
	default:
		return nil, fmt.Errorf("bench: --mode %q: want closed or open", mode)
	}
	var out []Scenario
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, loop, _ := strings.Cut(item, ":")
		s, ok := findScenario(name)
		if !ok {
			return nil, fmt.Errorf("bench: unknown scenario %q (known: %s)", name, scenarioNames())
		}
		switch loop {
		case "", "closed":
		case "open":
			s.Open = true
		default:
			return nil, fmt.Errorf("bench: scenario %q: suffix %q: want :open or :closed", item, loop)
		}
		if mode != "" {
			s.Open = mode == "open"
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench: no scenarios")
	}
	return out, nil
}

func findScenario(name string) (Scenario, bool) {
	for _, s := range scenarioTable {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

func scenarioNames() string {
	names := make([]string, len(scenarioTable))
	for i, s := range scenarioTable {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}
