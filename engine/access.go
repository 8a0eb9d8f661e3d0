package engine

import (
	"log/slog"
	"sync"
	"time"
	"unsafe"
)

// accessLine is the scratch of an access line being written: its
// attributes and the bytes of its trace id.
type accessLine struct {
	attrs [16]slog.Attr
	id    [32]byte
}

var accessScratch = sync.Pool{New: func() any { return new(accessLine) }}

// bytesString views b as a string without copying; the caller keeps b
// unchanged while the string is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// account counts a finished request and writes its access log line: the
// sampler decides first, and a line it drops is never built.
func (e *Engine) account(x *exchange) {
	ctx := x.ctx
	status := x.status
	if status == 0 {
		status = ctx.Response.StatusCode()
	}
	if r := x.route; r != nil {
		r.stats.count(status)
	} else {
		e.metrics.unrouted.count(status)
	}
	if e.access == nil {
		return
	}
	if s := e.opts.Sampler; s.Mode() == SampleTrace {
		if !x.trace.sampled() {
			return
		}
	} else if !s.Keep(CatAccess, slog.LevelInfo, EvAccess) {
		return
	}
	e.writeAccess(x, status)
}

// writeAccess writes one access log line (category Vkp.Access, event 1).
// duration runs from the request's arrival to its response head being
// ready: a streamed body goes on after it. path has no query (queries
// carry tokens).
func (e *Engine) writeAccess(x *exchange, status int) {
	ctx := x.ctx
	req, resp := &ctx.Request, &ctx.Response
	var route, cluster, dest string
	if r := x.route; r != nil {
		route = r.ID
		if r.cluster != nil {
			cluster = r.cluster.ID
		}
	}
	if x.dest != nil {
		dest = x.dest.Address
	}
	in := int64(x.body.n)
	if in < 0 {
		in = int64(x.body.read) // chunked: what was read
	}
	out := int64(resp.Header.ContentLength())
	if out < 0 {
		out = int64(len(resp.Body()))
	}
	if req.Header.IsHead() || status == 304 || status == 204 {
		out = 0
	}
	al := accessScratch.Get().(*accessLine)
	defer accessScratch.Put(al)
	// The line's fields go as one group with an empty key, which handlers
	// inline: a record holds five attributes in place and allocates for
	// more. method and path point into the request, which outlives the
	// synchronous handler chain that formats them.
	attrs := append(al.attrs[:0],
		slog.String("route", route),
		slog.String("cluster", cluster),
		slog.String("destination", dest),
		slog.String("method", bytesString(req.Header.Method())),
		slog.String("path", bytesString(req.URI().PathOriginal())),
		slog.Int("status", status),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Float64("duration_ms", float64(time.Since(ctx.Time()).Microseconds())/1000),
		slog.Float64("upstream_ms", float64(x.upstream.Microseconds())/1000),
		slog.String("client", ctx.RemoteIP().String()),
	)
	t := x.trace
	if !t.ok {
		parseTraceparent(req.Header.Peek("traceparent"), &t)
	}
	if t.ok {
		attrs = append(attrs, slog.String("trace_id", bytesString(t.appendID(al.id[:0]))))
	}
	if cs := resp.Header.PeekAll("Cache-Status"); len(cs) > 0 {
		attrs = append(attrs, slog.String("cache", bytesString(cs[len(cs)-1]))) // vkp's own member
	}
	e.access.LogAttrs(presampled, slog.LevelInfo, "request", slog.Attr{Value: slog.GroupValue(attrs...)})
	clear(attrs) // the pool keeps no pointers into this request
}
