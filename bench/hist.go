package main

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 60 s with 3
// significant digits: every reported percentile is within 0.1% of the
// recorded value.
const (
	histMin     = 1
	histMax     = int64(60 * time.Second / time.Microsecond)
	histSigFigs = 3
	histShards  = 8
)

// Histogram is a latency histogram safe for concurrent use. Writers are
// spread over a few mutex-guarded shards instead of one histogram per
// connection: an HDR histogram at this range is ~100 KiB and open-loop runs
// use hundreds of workers.
type Histogram struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
		_  [40]byte // keep shards on separate cache lines
	}
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	for i := range h.shards {
		h.shards[i].h = hdrhistogram.New(histMin, histMax, histSigFigs)
	}
	return h
}

// Record adds one latency. shard is any stable per-writer number (a worker
// index); values outside the range are clamped, never dropped.
func (h *Histogram) Record(shard int, d time.Duration) {
	v := int64(d / time.Microsecond)
	if v < histMin {
		v = histMin
	}
	if v > histMax {
		v = histMax
	}
	s := &h.shards[uint(shard)%histShards]
	s.mu.Lock()
	_ = s.h.RecordValue(v)
	s.mu.Unlock()
}

// Summary merges the shards and returns the percentiles.
func (h *Histogram) Summary() LatencySummary {
	m := hdrhistogram.New(histMin, histMax, histSigFigs)
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		m.Merge(s.h)
		s.mu.Unlock()
	}
	return summarize(m)
}

// LatencySummary is what the report shows of a histogram.
type LatencySummary struct {
	Count                    int64
	Mean                     time.Duration
	P50, P90, P99, P999, Max time.Duration
}

func summarize(h *hdrhistogram.Histogram) LatencySummary {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return LatencySummary{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}
