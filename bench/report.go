package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// writeTable writes the Markdown table. Ratios are vkp/peer for the same
// scenario in the same run: rps above 1 and p99 below 1 favour vkp.
func writeTable(w io.Writer, cells []Cell) {
	fmt.Fprintln(w, "| scenario | proxy | rps | p50 | p99 | p99.9 | errors | delivery | peak RSS | CPU s | rps vkp/peer | p99 vkp/peer |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|")
	vkp := map[string]*Cell{}
	for i := range cells {
		if cells[i].Proxy == "vkp" && cells[i].measured() {
			vkp[cells[i].key()] = &cells[i]
		}
	}
	for i := range cells {
		c := &cells[i]
		row := []string{c.label(), c.Proxy}
		if !c.measured() {
			row = append(row, c.Status, "—", "—", "—", "—", "—", "—", "—", "—", "—")
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			continue
		}
		l := c.Load
		row = append(row,
			fmt.Sprintf("%.0f", l.RPS()),
			fmtLatency(l.Latency.P50), fmtLatency(l.Latency.P99), fmtLatency(l.Latency.P999),
			c.errorString(),
			c.deliveryString(),
			fmtBytes(c.Usage.PeakRSS),
			fmt.Sprintf("%.1f", c.Usage.CPU.Seconds()),
		)
		v := vkp[c.key()]
		if c.Proxy == "vkp" || v == nil {
			row = append(row, "—", "—")
		} else {
			row = append(row, ratio(v.Load.RPS(), l.RPS()),
				ratio(float64(v.Load.Latency.P99), float64(l.Latency.P99)))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// rateLabel is set by main so labels show the open-loop rate of the run.
var rateLabel float64

func (c *Cell) label() string {
	if c.Round > 1 || (c.Round == 1 && roundsLabel > 1) {
		return fmt.Sprintf("%s #%d", c.Scenario.Label(rateLabel), c.Round)
	}
	return c.Scenario.Label(rateLabel)
}

// roundsLabel is set by main: with several rounds, labels show the round.
var roundsLabel int

// key pairs a cell with vkp's cell of the same scenario and round.
func (c *Cell) key() string {
	return fmt.Sprintf("%s|%t|%d", c.Scenario.Name, c.Scenario.Open, c.Round)
}

func (c *Cell) measured() bool { return c.Status == "" && c.Load != nil }

// errorString is the load generator's errors plus bytes the origin never
// received: a lost byte is an error, not a fast number.
func (c *Cell) errorString() string {
	s := c.Load.ErrorString()
	if c.OriginMissing > 0 {
		s += fmt.Sprintf("; origin missing %s", fmtBytes(c.OriginMissing))
	}
	return s
}

// failed reports whether the cell's numbers must not be trusted.
func (c *Cell) failed() bool {
	return c.measured() && (c.Load.ErrorCount() > 0 || c.OriginMissing > 0)
}

func (c *Cell) deliveryString() string {
	if c.Delivery < 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*c.Delivery)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// fmtLatency prints three significant digits in a unit that fits.
func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// writeNotes lists what the table cannot show: cache effectiveness, open
// loop completeness, shadow bytes, skipped peers.
func writeNotes(w io.Writer, cells []Cell, notes []string) {
	var lines []string
	for i := range cells {
		c := &cells[i]
		if !c.measured() {
			continue
		}
		l := c.Load
		var parts []string
		if c.Scenario.Cache {
			parts = append(parts, fmt.Sprintf("origin saw %d requests for %d responses", c.OriginRequests, l.OK))
		}
		if c.Scenario.Mirror {
			parts = append(parts, fmt.Sprintf("shadow got %s of %s sent", fmtBytes(c.ShadowBytes), fmtBytes(l.BodySent)))
			if c.ShadowCPU > 0 && l.OK > 0 {
				// Per request served: what the shadow and the origin paid
				// for each, beside the proxy's own CPU s in the table.
				parts = append(parts, fmt.Sprintf("CPU per request: proxy %s, origin %s, shadow %s",
					perReq(c.Usage.CPU, l.OK), perReq(c.OriginCPU, l.OK), perReq(c.ShadowCPU, l.OK)))
			}
		}
		if c.Scenario.Open {
			parts = append(parts, fmt.Sprintf("%d of %d scheduled requests OK", l.OK, l.Started))
		}
		if c.Scenario.Stream {
			parts = append(parts, fmt.Sprintf("time to first byte p50 %s, p99 %s", fmtLatency(l.TTFB.P50), fmtLatency(l.TTFB.P99)))
		}
		if busy := c.busy(); busy > 0 && busy < clientBound && !c.Scenario.Open {
			parts = append(parts, fmt.Sprintf("the proxy was busy %.0f%% of its CPUs: the load generator, not the proxy, set this rate", 100*busy))
		}
		if c.SettledRSS > 0 {
			parts = append(parts, fmt.Sprintf("RSS %s after %s idle", fmtBytes(c.SettledRSS), c.Scenario.Settle))
		}
		if c.failed() {
			parts = append(parts, "errors: numbers not comparable")
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("- %s / %s: %s", c.label(), c.Proxy, strings.Join(parts, "; ")))
		}
	}
	for _, n := range notes {
		lines = append(lines, "- "+n)
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}

// writeLoadResult prints one load run for the `load` subcommand.
func writeLoadResult(w io.Writer, r *LoadResult) {
	l := r.Latency
	fmt.Fprintf(w, "mode %s, %s: %d started, %d OK, %.0f rps\n", r.Mode, r.Elapsed.Round(time.Millisecond), r.Started, r.OK, r.RPS())
	fmt.Fprintf(w, "latency p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
		fmtLatency(l.P50), fmtLatency(l.P90), fmtLatency(l.P99), fmtLatency(l.P999), fmtLatency(l.Max), fmtLatency(l.Mean))
	fmt.Fprintf(w, "errors %s\n", r.ErrorString())
	fmt.Fprintf(w, "body sent %s, received %s\n", fmtBytes(r.BodySent), fmtBytes(r.BytesRecv))
}

// clientBound is the share of its own CPUs under which a pinned proxy in
// a closed loop was waiting for the client rather than working.
const clientBound = 0.9

// busy is the share of its own CPUs a pinned proxy used over the measured
// run; 0 when it was not pinned.
func (c *Cell) busy() float64 {
	if c.PinnedCPUs == 0 || c.Load == nil || c.Load.Elapsed <= 0 {
		return 0
	}
	return float64(c.Usage.CPU) / float64(c.Load.Elapsed) / float64(c.PinnedCPUs)
}

// perReq formats d spread over n requests in microseconds.
func perReq(d time.Duration, n int64) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)/float64(n))
}

// writeMedians summarises several rounds: per scenario and proxy, the
// median with its range over the rounds, and the median (range) of the
// per-round ratios vkp/peer. Rounds with errors are left out.
func writeMedians(w io.Writer, cells []Cell) {
	type group struct {
		label, proxy string
		cells        []*Cell
		ratioRPS     []float64
		ratioP99     []float64
	}
	var order []string
	groups := map[string]*group{}
	vkp := map[string]*Cell{}
	for i := range cells {
		if c := &cells[i]; c.Proxy == "vkp" && c.measured() && !c.failed() {
			vkp[c.key()] = c
		}
	}
	for i := range cells {
		c := &cells[i]
		if !c.measured() || c.failed() {
			continue
		}
		k := c.Scenario.Label(rateLabel) + "|" + c.Proxy
		g := groups[k]
		if g == nil {
			g = &group{label: c.Scenario.Label(rateLabel), proxy: c.Proxy}
			groups[k] = g
			order = append(order, k)
		}
		g.cells = append(g.cells, c)
		if v := vkp[c.key()]; v != nil && c.Proxy != "vkp" && c.Load.RPS() > 0 && c.Load.Latency.P99 > 0 {
			g.ratioRPS = append(g.ratioRPS, v.Load.RPS()/c.Load.RPS())
			g.ratioP99 = append(g.ratioP99, float64(v.Load.Latency.P99)/float64(c.Load.Latency.P99))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians over the rounds, [min–max]:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | proxy | rounds | rps | p50 | p99 | TTFB p50 | peak RSS | settled RSS | CPU/req | rps vkp/peer | p99 vkp/peer |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, k := range order {
		g := groups[k]
		pick := func(f func(c *Cell) float64) []float64 {
			out := make([]float64, len(g.cells))
			for i, c := range g.cells {
				out[i] = f(c)
			}
			return out
		}
		lat := func(f func(c *Cell) time.Duration) string {
			v := pick(func(c *Cell) float64 { return float64(f(c)) })
			m, lo, hi := medianRange(v)
			return fmt.Sprintf("%s [%s–%s]", fmtLatency(time.Duration(m)), fmtLatency(time.Duration(lo)), fmtLatency(time.Duration(hi)))
		}
		bytesCol := func(f func(c *Cell) int64) string {
			v := pick(func(c *Cell) float64 { return float64(f(c)) })
			m, lo, hi := medianRange(v)
			if hi == 0 {
				return "—"
			}
			return fmt.Sprintf("%s [%s–%s]", fmtBytes(int64(m)), fmtBytes(int64(lo)), fmtBytes(int64(hi)))
		}
		rps := pick(func(c *Cell) float64 { return c.Load.RPS() })
		m, lo, hi := medianRange(rps)
		row := []string{g.label, g.proxy, fmt.Sprint(len(g.cells)),
			fmt.Sprintf("%.0f [%.0f–%.0f]", m, lo, hi),
			lat(func(c *Cell) time.Duration { return c.Load.Latency.P50 }),
			lat(func(c *Cell) time.Duration { return c.Load.Latency.P99 }),
		}
		if g.cells[0].Scenario.Stream {
			row = append(row, lat(func(c *Cell) time.Duration { return c.Load.TTFB.P50 }))
		} else {
			row = append(row, "—")
		}
		row = append(row,
			bytesCol(func(c *Cell) int64 { return c.Usage.PeakRSS }),
			bytesCol(func(c *Cell) int64 { return c.SettledRSS }),
		)
		cpu := pick(func(c *Cell) float64 {
			if c.Load.OK == 0 {
				return 0
			}
			return float64(c.Usage.CPU) / float64(time.Microsecond) / float64(c.Load.OK)
		})
		cm, clo, chi := medianRange(cpu)
		row = append(row, fmt.Sprintf("%.0f µs [%.0f–%.0f]", cm, clo, chi))
		for _, r := range [][]float64{g.ratioRPS, g.ratioP99} {
			if len(r) == 0 {
				row = append(row, "—")
				continue
			}
			m, lo, hi := medianRange(r)
			row = append(row, fmt.Sprintf("%.2f× [%.2f–%.2f]", m, lo, hi))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// medianRange returns the median (the mean of the middle two for an even
// count), the smallest and the largest of v.
func medianRange(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}
