package engine

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/pool"
)

// Mirroring sends a copy of a route's requests to one or more shadow
// clusters. The main request never waits for a copy and is never changed by
// it: the copy is taken after the main response is produced, handed to a
// bounded queue, and sent by an elastic set of sender goroutines whose number
// follows the shadow's latency (a 100 ms shadow at 2,000 req/s needs ~200
// sends in flight), up to the in-flight limit. The body moves to the copy
// without copying: the request's body buffer is swapped for an empty pooled
// one. From the main response on (not while the main request is served: its
// body is its own until then), a body is charged to a process-wide memory
// budget until it has been written to the shadow (its buffer then goes back
// to the pool, while the copy waits for the answer), and each copy is
// charged a fixed MirrorCopyCost until it is answered. When the queue, the
// budget or the in-flight limit is exhausted, the copy is dropped and
// counted; the main path never blocks.
//
// The copy is queued only after the main response is produced, although
// starting it as soon as the body is read costs less CPU (the body is still
// in cache; BENCHMARKS.md has the numbers): with the origin done first, a
// shadow that shares state with it cannot act first and change the main
// response.

// Defaults for the process-wide mirror limits (serve flags --mirror-*).
const (
	// DefaultMirrorInflight covers a 100 ms shadow at 2,000 mirrored req/s
	// (~200 copies in flight) with room to spare. It is also how many
	// copies a hanging shadow receives in its first MirrorTimeout, before
	// the timeouts mark it down (mirror_breaker.go): sends to it are
	// written, then wait for the timeout, so the limit (not the memory
	// budget) bounds that traffic; a limit four times higher cost the main
	// path's p99 dearly in that case (BENCHMARKS.md).
	DefaultMirrorInflight = 256
	DefaultMirrorQueue    = 4096
	DefaultMirrorMemory   = 256 << 20
	DefaultMirrorTimeout  = 5 * time.Second
	mirrorIdle            = 2 * time.Second // an idle sender exits after this

	// MirrorCopyCost is what each copy is charged on top of its body: the
	// copied header, and while it is sent a goroutine stack, a connection
	// with its buffers and a request/response pair. Like the body, it is
	// charged from the main response on: while the main request is served,
	// the header copy is held uncharged, next to the request it came from.
	// It is about twice what copies stuck on a hanging shadow were measured
	// to hold beyond their bodies (BENCHMARKS.md, post-1mib-mirror-hang),
	// for stacks that grow and the runtime's own overhead, and keeps the
	// process within --mirror-memory of its no-mirror size, small bodies
	// included. With the default limits the budget holds more small-body
	// copies than the queue and in-flight limits allow.
	MirrorCopyCost = 48 << 10
)

// mirrorStage is the mirror's place in a route's pipeline (pipeline.go).
var mirrorStage = stage{
	name:  "mirror",
	keys:  []string{"MirrorCluster", "MirrorPercent", "MirrorMaxBodySize", "MirrorTimeout", "MirrorHeaders"},
	build: buildMirror,
}

// MirrorStats are the mirror's counters since the engine started.
type MirrorStats struct {
	Due         uint64        // copies selected for sending (sampling passed)
	Sent        uint64        // copies the shadow answered (any status)
	Failed      uint64        // copies that met a connect/IO error or timeout
	Dropped     uint64        // copies refused by the queue, in-flight limit or memory budget, cut at shutdown, or for a shadow that is down
	DroppedDown uint64        // of Dropped: copies for a shadow whose destinations were all down (mirror_breaker.go)
	DroppedBody uint64        // of Dropped: copies whose body --body-memory could not hold
	Skipped     uint64        // requests not copied because the body exceeds MirrorMaxBodySize
	BodyBytes   uint64        // request body bytes of the copies the shadow answered
	Inflight    int64         // copies being sent now
	Queued      int64         // copies waiting for a sender
	Memory      int64         // bytes charged: bodies not yet written to the shadow + MirrorCopyCost per copy not yet answered
	LatencyN    uint64        // number of latency samples: copies that went to a destination (Sent, and the Failed ones that got that far)
	LatencySum  time.Duration // sum of send latencies
	LatencyMax  time.Duration // largest send latency
}

// routeMirror is a route's compiled mirror settings.
type routeMirror struct {
	clusters  []*Cluster
	perMyriad uint64 // sampling rate in 1/10000
	maxBody   int    // 0: no limit
	timeout   time.Duration
	headers   [][2]string
	seq       atomic.Uint64 // sampling counter
	brks      [][]breaker   // [cluster][mirror destination]: mirror_breaker.go
	routeID   string
	now       func() int64 // the breakers' clock (Options.Clock)
	xf        *xForwarded  // the route's X-Forwarded-* handling
	keepHost  bool         // the route keeps the client's Host (RequestHeaderOriginalHost)
}

// sample spreads the chosen requests evenly: request n is chosen when
// floor(n*rate) grows, so 10% picks every tenth request, not bursts.
func (m *routeMirror) sample() bool {
	switch m.perMyriad {
	case 10000:
		return true
	case 0:
		return false
	}
	n := m.seq.Add(1)
	return n*m.perMyriad/10000 != (n-1)*m.perMyriad/10000
}

// buildMirror wraps next with mirroring when the route configures it. A
// mirrored request's body is held whole (the copy needs it); when
// --body-memory cannot take it, the main request streams its body as any
// other and the copy is dropped and counted (DroppedBody): the main path
// never waits for the mirror's sake.
func buildMirror(c *compiler, r *Route, next handler) handler {
	rm := c.compileMirror(r)
	if rm == nil {
		return next
	}
	k := uint64(len(rm.clusters))
	return func(x *exchange) {
		e, m := x.e, x.e.mirror
		ctx := x.ctx
		if !rm.sample() {
			next(x)
			return
		}
		if n := x.body.n; rm.maxBody > 0 && n > rm.maxBody {
			m.skipped.Add(k)
			next(x)
			return
		}
		herr := x.hold(e.opts.MaxRequestBodySize)
		if herr != nil && !errors.Is(herr, errBodyMemory) {
			e.fail(x, herr, nil) // the client's body failed: the main request fails too
			return
		}
		if herr == nil && rm.maxBody > 0 && len(x.body.held()) > rm.maxBody {
			m.skipped.Add(k) // a chunked body, now known to be too big
			next(x)
			return
		}
		m.due.Add(k)
		if herr != nil {
			m.dropped.Add(k)
			m.droppedBody.Add(k)
			next(x)
			return
		}
		if !rm.anyClusterUp() {
			m.dropDown(k)
			next(x)
			return
		}
		job := m.enter(len(rm.clusters))
		if job == nil {
			next(x)
			return
		}
		// The header and target are copied before forwarding rewrites them
		// for the main destination; the body is taken after.
		ctx.Request.Header.CopyTo(&job.req.Header)
		job.target = appendOriginForm(job.target[:0], &ctx.Request)
		job.req.SetRequestURIBytes(job.target)
		job.rm = rm
		job.tls = ctx.IsTLS()
		job.ipLen = len(appendRemoteIP(job.remoteIP[:0], ctx.RemoteAddr()))
		next(x)
		// The body moves to the copy and the budget is charged only now:
		// while the main request is served its body is the main request's
		// (charged to --body-memory), and a slow origin must not use up the
		// mirror budget of copies it holds nothing of.
		switch {
		case x.body.buf != nil:
			job.body = x.body.buf
			x.body.buf = nil
			e.bodyMem.Add(-x.body.charged)
			x.body.charged = 0
		default:
			// No body, or one built in-process in the request itself:
			// swap it out, an empty pooled buffer takes its place.
			job.body = pool.Bodies.Get()
			job.body.B = ctx.Request.SwapBody(job.body.B[:0])
		}
		job.bodyLen = len(job.body.B)
		if !m.charge(job) {
			return
		}
		for i, c := range rm.clusters {
			j := job
			if len(rm.clusters) > 1 {
				j = job.fork(c)
			} else {
				job.cluster = c
			}
			j.brks = rm.brks[i]
			m.submit(j)
		}
	}
}

// anyClusterUp reports whether some mirror cluster of the route has a
// destination that could take a copy now. Copies for clusters that are down
// are dropped by send; when all are, mirrorStage drops them before any work.
func (m *routeMirror) anyClusterUp() bool {
	for i := range m.clusters {
		if m.anyUp(i) {
			return true
		}
	}
	return false
}

// pickForMirror picks among dests (the cluster's mirror destinations, or
// those of them that are up) with the cluster's own policy. Mirror pools are
// separate from the main ones, so mirror sends never skew the main traffic's
// LeastRequests/P2C choices.
func (c *Cluster) pickForMirror(j *mirrorJob, dests []*Destination) *Destination {
	if len(dests) == 1 {
		return dests[0]
	}
	return c.picker.Pick(&j.req, dests)
}

// prepareMirrorRequest applies the main path's rewrite for the mirror
// destination (target, Host, HTTP/1.1, framing), then the route's
// MirrorHeaders.
func prepareMirrorRequest(h *fasthttp.RequestHeader, j *mirrorJob, d *Destination) {
	rewriteForUpstream(h, j.remoteIP[:j.ipLen], j.tls, j.rm.xf)
	sb := pool.Scratch.Get()
	sb.B = append(append(sb.B[:0], d.base...), j.target...)
	h.SetRequestURIBytes(sb.B)
	pool.Scratch.Put(sb)
	setUpstreamHost(h, d, h.Host(), j.rm.keepHost)
	h.SetProtocolBytes(strHTTP11)
	if j.bodyLen > 0 || (!h.IsGet() && !h.IsHead()) {
		h.SetContentLength(j.bodyLen)
	}
	for _, kv := range j.rm.headers {
		h.Set(kv[0], kv[1])
	}
}

// compileMirror reads a route's Mirror* metadata (nil: not mirrored, or a
// problem, reported to c with the key's JSON path).
func (c *compiler) compileMirror(r *Route) *routeMirror {
	names, ok := r.meta("MirrorCluster")
	if !ok || strings.TrimSpace(names) == "" {
		return nil
	}
	nerr := len(c.errs)
	rm := &routeMirror{perMyriad: 10000, timeout: DefaultMirrorTimeout, routeID: r.ID, now: c.opts.Clock,
		xf: r.cfg.xf, keepHost: r.cfg.KeepHost}
	path := r.metaPath("MirrorCluster")
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		cl := c.cluster(n)
		switch {
		case cl == nil:
			c.errorf(path, "cluster %q is not defined in ReverseProxy.Clusters", n)
		case slices.Contains(rm.clusters, cl):
			c.errorf(path, "cluster %q is listed twice (each listed cluster gets its own copy)", n)
		default:
			rm.clusters = append(rm.clusters, cl)
		}
	}
	if v, ok := r.meta("MirrorPercent"); ok {
		p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
		if err != nil || p < 0 || p > 100 || math.IsNaN(p) {
			c.errorf(r.metaPath("MirrorPercent"), "%q is not a number from 0 to 100", v)
		}
		rm.perMyriad = uint64(math.Round(p * 100))
	}
	if v, ok := r.meta("MirrorMaxBodySize"); ok {
		n, err := ParseSize(v)
		if err != nil {
			c.errorf(r.metaPath("MirrorMaxBodySize"), "%v", err)
		}
		rm.maxBody = n
	}
	if v, ok := r.meta("MirrorTimeout"); ok {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			c.errorf(r.metaPath("MirrorTimeout"), "%q: want a positive duration like \"00:00:05\" or \"5s\"", v)
		}
		rm.timeout = d
	}
	if v, ok := r.meta("MirrorHeaders"); ok {
		hp := r.metaPath("MirrorHeaders")
		for _, part := range strings.Split(v, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, val, found := strings.Cut(part, ":")
			k = strings.TrimSpace(k)
			switch {
			case !found || !isToken(k):
				c.errorf(hp, "%q is not \"Name: value\" (pairs separated by ';')", part)
			case mirrorHeaderRefused(k):
				c.errorf(hp, "%q cannot be set: vkp frames each copy itself (Content-Length, Transfer-Encoding and hop-by-hop headers)", k)
			default:
				rm.headers = append(rm.headers, [2]string{k, strings.TrimSpace(val)})
			}
		}
	}
	if len(c.errs) > nerr || len(rm.clusters) == 0 {
		return nil
	}
	for _, cl := range rm.clusters {
		rm.brks = append(rm.brks, make([]breaker, len(c.mirrorDests(cl))))
	}
	return rm
}

// mirrorHeaderRefused reports whether MirrorHeaders may not set k: the
// copy's framing is vkp's, and a wrong Content-Length would make the shadow
// read the body as a second request.
func mirrorHeaderRefused(k string) bool {
	for _, list := range [][]string{{"Content-Length"}, hopHeaders, requestOnlyHeaders} {
		for _, h := range list {
			if strings.EqualFold(k, h) {
				return true
			}
		}
	}
	return false
}
