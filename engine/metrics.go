package engine

import (
	"io"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics, in the Prometheus text format (Engine.WriteMetrics, served on
// --admin at /metrics), kept by VictoriaMetrics/metrics: counters are
// atomic and resolved when a snapshot is compiled, so the request path
// only increments a handle; no metric name is built per request.
//
//	vkp_requests_total{route,code}                  requests by route ("" when none matched) and status class (1xx..5xx; "other")
//	vkp_requests_in_flight                          requests being served
//	vkp_upstream_duration_seconds{cluster}          histogram of upstream exchanges, to the response head
//	vkp_destination_up{cluster,destination}         1 when health checks let the destination take traffic
//	vkp_mirror_{due,sent,failed,dropped,skipped}_total   mirror copies
//	vkp_mirror_delivery_ratio                       sent / due
//	vkp_mirror_inflight, vkp_mirror_queued          copies being sent, waiting
//	vkp_cache_requests_total{route,result}          hit, miss, stored, bypass
//	vkp_cache_hit_bytes_total{route}                body bytes answered from the cache
//	vkp_reloads_total{result}                       applied, rejected
//	go_*, process_*                                 the Go runtime and the process
//
// A route, cluster or destination a reload removes takes its series with
// it; those a reload keeps keep counting.

// engineMetrics is the engine's metric set.
type engineMetrics struct {
	set      *metrics.Set
	unrouted statusCounters
	reloads  [2]*metrics.Counter // applied, rejected

	mu    sync.Mutex
	users map[string]int // names registered per snapshot: snapshots using each
}

func newEngineMetrics() *engineMetrics {
	// # TYPE lines: scrapers then read the histogram as one.
	metrics.ExposeMetadata(true)
	m := &engineMetrics{set: metrics.NewSet(), users: map[string]int{}}
	for i, class := range statusClasses {
		m.unrouted[i] = m.set.NewCounter(`vkp_requests_total{route="",code="` + class + `"}`)
	}
	m.reloads[0] = m.set.NewCounter(`vkp_reloads_total{result="applied"}`)
	m.reloads[1] = m.set.NewCounter(`vkp_reloads_total{result="rejected"}`)
	return m
}

// statusClasses label vkp_requests_total's code, by status / 100.
var statusClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// statusCounters counts requests by status class.
type statusCounters [6]*metrics.Counter

func (s *statusCounters) count(status int) {
	i := status / 100
	if i < 1 || i > 5 {
		i = 0
	}
	if c := s[i]; c != nil {
		c.Inc()
	}
}

// CountReload counts a reload applied or rejected.
func (e *Engine) CountReload(applied bool) {
	if applied {
		e.metrics.reloads[0].Inc()
	} else {
		e.metrics.reloads[1].Inc()
	}
}

// watchMirror exposes the mirror's counters, read when scraped.
func (m *engineMetrics) watchMirror(mr *mirrorer) {
	m.set.RegisterMetricsWriter(func(w io.Writer) {
		st := mr.Stats()
		// One family each: a family's TYPE line may appear only once, and
		// these values live in the mirror's own counters.
		metrics.WriteCounterUint64(w, "vkp_mirror_due_total", st.Due)
		metrics.WriteCounterUint64(w, "vkp_mirror_sent_total", st.Sent)
		metrics.WriteCounterUint64(w, "vkp_mirror_failed_total", st.Failed)
		metrics.WriteCounterUint64(w, "vkp_mirror_dropped_total", st.Dropped)
		metrics.WriteCounterUint64(w, "vkp_mirror_skipped_total", st.Skipped)
		ratio := 1.0
		if st.Due > 0 {
			ratio = float64(st.Sent) / float64(st.Due)
		}
		metrics.WriteGaugeFloat64(w, "vkp_mirror_delivery_ratio", ratio)
		metrics.WriteGaugeUint64(w, "vkp_mirror_inflight", uint64(max(st.Inflight, 0)))
		metrics.WriteGaugeUint64(w, "vkp_mirror_queued", uint64(max(st.Queued, 0)))
	})
}

// WriteMetrics writes every metric in the Prometheus text format.
func (e *Engine) WriteMetrics(w io.Writer) {
	metrics.WriteGaugeUint64(w, "vkp_requests_in_flight", uint64(max(e.served.Load(), 0)))
	e.metrics.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// metricsBuilder resolves a snapshot's metric handles and records their
// names, so that a later snapshot without them unregisters them.
type metricsBuilder struct {
	m     *engineMetrics
	names []string
	seen  map[string]bool
}

func (b *metricsBuilder) note(name string) {
	if !b.seen[name] {
		b.seen[name] = true
		b.names = append(b.names, name)
	}
}

func (b *metricsBuilder) counter(name string) *metrics.Counter {
	b.note(name)
	return b.m.set.GetOrCreateCounter(name)
}

func (b *metricsBuilder) statusCounters(route string) statusCounters {
	var s statusCounters
	for i, class := range statusClasses {
		s[i] = b.counter(`vkp_requests_total{route="` + labelValue(route) + `",code="` + class + `"}`)
	}
	return s
}

// upstreamBuckets are the upper bounds (seconds) of the upstream duration
// histogram.
var upstreamBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func (b *metricsBuilder) histogram(name string) *metrics.PrometheusHistogram {
	b.note(name)
	return b.m.set.GetOrCreatePrometheusHistogramExt(name, upstreamBuckets)
}

func (b *metricsBuilder) gauge(name string, f func() float64) {
	b.note(name)
	b.m.set.GetOrCreateGauge(name, f)
}

// adopt counts a snapshot's names as used.
func (m *engineMetrics) adopt(names []string) {
	m.mu.Lock()
	for _, n := range names {
		m.users[n]++
	}
	m.mu.Unlock()
}

// release drops a snapshot's names; a name no snapshot uses any more is
// unregistered (a removed route's series go away).
func (m *engineMetrics) release(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		if m.users[n]--; m.users[n] <= 0 {
			delete(m.users, n)
			m.set.UnregisterMetric(n)
		}
	}
}

// labelValue escapes a Prometheus label value.
func labelValue(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return r.Replace(s)
}

// routeCacheStats are a cached route's counters.
type routeCacheStats struct {
	hit, miss, stored, bypass, hitBytes *metrics.Counter
}

func (b *metricsBuilder) cacheStats(route string) routeCacheStats {
	l := `route="` + labelValue(route) + `"`
	return routeCacheStats{
		hit:      b.counter(`vkp_cache_requests_total{` + l + `,result="hit"}`),
		miss:     b.counter(`vkp_cache_requests_total{` + l + `,result="miss"}`),
		stored:   b.counter(`vkp_cache_requests_total{` + l + `,result="stored"}`),
		bypass:   b.counter(`vkp_cache_requests_total{` + l + `,result="bypass"}`),
		hitBytes: b.counter(`vkp_cache_hit_bytes_total{` + l + `}`),
	}
}
