package main

import (
	"fmt"
	"io"
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
			vkp[cells[i].Scenario.Name+fmt.Sprint(cells[i].Scenario.Open)] = &cells[i]
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
		v := vkp[c.Scenario.Name+fmt.Sprint(c.Scenario.Open)]
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

func (c *Cell) label() string { return c.Scenario.Label(rateLabel) }

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

// perReq formats d spread over n requests in microseconds.
func perReq(d time.Duration, n int64) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)/float64(n))
}
