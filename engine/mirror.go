package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// starting it as soon as the body is read costs less CPU (the body is still in
// cache: 8% less proxy CPU per 1 MiB request over five alternating runs,
// BENCHMARKS.md): with the origin done first, a shadow that shares state with
// it cannot act first and change the main response.

// Defaults for the process-wide mirror limits (serve flags --mirror-*).
const (
	// DefaultMirrorInflight covers a 100 ms shadow at 2,000 mirrored req/s
	// (~200 copies in flight) with room to spare. It is also how many
	// copies a hanging shadow receives in its first MirrorTimeout, before
	// the timeouts mark it down (mirror_breaker.go): sends to it are
	// written, then wait for the timeout, so the limit (not the memory
	// budget) bounds that traffic. 1024 sent 1 GiB of 1 MiB copies per 5 s
	// to a hanging shadow and cost the main path ~1.6x its p99.
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
	// Measured: copies stuck on a hanging shadow hold ~22 KiB each beyond
	// their bodies (BENCHMARKS.md, post-1mib-mirror-hang); the charge is
	// about twice that, for stacks that grow and the runtime's own
	// overhead. It keeps
	// the process within --mirror-memory of its no-mirror size, small
	// bodies included. With the default limits, the budget holds ~5000
	// small-body copies, more than the queue and in-flight limits allow
	// (4352); for 1 MiB bodies it costs ~12 of 256 queued copies.
	MirrorCopyCost = 48 << 10
)

func init() {
	for _, k := range []string{"MirrorCluster", "MirrorPercent", "MirrorMaxBodySize", "MirrorTimeout", "MirrorHeaders"} {
		implementedRouteKeys[strings.ToLower(k)] = true
	}
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

// mirrorJob is one request copy. With several mirror clusters, the first
// job (the owner) holds the body and the budget charges, and one sibling job
// per further cluster shares them.
type mirrorJob struct {
	m        *mirrorer
	rm       *routeMirror
	header   fasthttp.RequestHeader
	target   []byte       // request-target (origin-form) as the client sent it
	body     *pool.Buffer // owner only; nil once every sibling has written it
	bodyLen  int
	remoteIP [46]byte
	ipLen    int
	tls      bool
	cluster  *Cluster
	brks     []breaker    // the route's breakers for cluster's mirror destinations
	written  bool         // this job no longer needs the body
	owner    *mirrorJob   // siblings only: the job whose body they share
	refs     atomic.Int32 // owner only: jobs not yet done
	bodyRefs atomic.Int32 // owner only: jobs that still need the body
	bodyCost int64        // owner only: bytes charged for the body buffer
}

var jobPool = sync.Pool{New: func() any { return &mirrorJob{} }}

// mirrorer owns the queue, the senders and the counters. One per Engine.
type mirrorer struct {
	log         *slog.Logger
	queue       chan *mirrorJob
	maxInflight int64
	memBudget   int64

	senders  atomic.Int64 // running sender goroutines
	pending  atomic.Int64 // copies queued or being sent
	entering atomic.Int64 // copies entered and not yet submitted or refused (their main request may still run)
	closeMu  sync.RWMutex // submit and settle (read) against close (write)
	final    bool         // under closeMu: close has given up waiting; submit drops
	// cut is set under closeMu when close has counted the copies senders
	// still hold as dropped: settle counts nothing more, send sends nothing.
	cut      atomic.Bool
	inflight atomic.Int64
	memory   atomic.Int64
	closed   atomic.Bool
	stop     chan struct{} // closed by close(): idle senders exit
	wg       sync.WaitGroup

	due, sent, failed, dropped, skipped, bodyBytes atomic.Uint64
	droppedDown, droppedBody                       atomic.Uint64
	latN, latSum, latMax                           atomic.Uint64

	lastFailLog atomic.Int64 // unix nanos of the last failure log line
	failsSince  atomic.Uint64
}

func newMirrorer(o Options, log *slog.Logger) *mirrorer {
	return &mirrorer{
		log:         log,
		queue:       make(chan *mirrorJob, o.MirrorQueue),
		maxInflight: int64(o.MirrorInflight),
		memBudget:   o.MirrorMemory,
		stop:        make(chan struct{}),
	}
}

// Stats returns a snapshot of the counters.
func (m *mirrorer) Stats() MirrorStats {
	return MirrorStats{
		Due: m.due.Load(), Sent: m.sent.Load(), Failed: m.failed.Load(), Dropped: m.dropped.Load(),
		DroppedDown: m.droppedDown.Load(), DroppedBody: m.droppedBody.Load(), Skipped: m.skipped.Load(), BodyBytes: m.bodyBytes.Load(), Inflight: m.inflight.Load(),
		Queued: int64(len(m.queue)), Memory: m.memory.Load(), LatencyN: m.latN.Load(),
		LatencySum: time.Duration(m.latSum.Load()), LatencyMax: time.Duration(m.latMax.Load()),
	}
}

// mirrorStage wraps next with mirroring when the route configures it. A
// mirrored request's body is held whole (the copy needs it); when
// --body-memory cannot take it, the main request streams its body as any
// other and the copy is dropped and counted (DroppedBody): the main path
// never waits for the mirror's sake.
func (e *Engine) mirrorStage(r *Route, next handler) handler {
	rm := r.mirror
	if rm == nil {
		return next
	}
	m := e.mirror
	k := uint64(len(rm.clusters))
	return func(x *exchange) {
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
		ctx.Request.Header.CopyTo(&job.header)
		job.target = appendOriginForm(job.target[:0], &ctx.Request)
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

func (m *mirrorer) dropDown(n uint64) {
	m.dropped.Add(n)
	m.droppedDown.Add(n)
}

// enter returns a job for k copies of a request about to be served, or nil
// (and counts the drops) when the mirror is closed or the queue is full.
// close waits for entered jobs to be charged and submitted, or refused.
func (m *mirrorer) enter(k int) *mirrorJob {
	if m.closed.Load() || len(m.queue)+k > cap(m.queue) {
		m.dropped.Add(uint64(k))
		return nil
	}
	m.entering.Add(int64(k))
	job := jobPool.Get().(*mirrorJob)
	job.m = m
	job.refs.Store(int32(k))
	job.bodyRefs.Store(int32(k))
	return job
}

// charge charges the job's body buffer (its capacity: what is held, which
// fasthttp's pooling can make larger than the body) and the per-copy cost
// for its copies to the budget. When the budget is exhausted it drops and
// counts them, releases the job and its body and reports false.
func (m *mirrorer) charge(job *mirrorJob) bool {
	k := int64(len(job.rm.clusters))
	n, cost := int64(cap(job.body.B)), k*MirrorCopyCost
	if m.memory.Add(n+cost) <= m.memBudget {
		job.bodyCost = n
		return true
	}
	m.memory.Add(-n - cost)
	m.dropped.Add(uint64(k))
	m.entering.Add(-k)
	pool.Bodies.Put(job.body)
	job.reset()
	jobPool.Put(job)
	return false
}

// fork makes a sibling job that shares j's body (multiple mirror clusters).
// The first sibling is j itself; later ones copy the header.
func (j *mirrorJob) fork(c *Cluster) *mirrorJob {
	if j.cluster == nil {
		j.cluster = c
		return j
	}
	s := jobPool.Get().(*mirrorJob)
	j.header.CopyTo(&s.header)
	s.target = append(s.target[:0], j.target...)
	s.m, s.rm, s.tls, s.remoteIP, s.ipLen, s.cluster = j.m, j.rm, j.tls, j.remoteIP, j.ipLen, c
	s.bodyLen = j.bodyLen
	s.owner = j
	return s
}

func (m *mirrorer) submit(j *mirrorJob) {
	// The read lock orders this against close: once close has set final
	// under the write lock, no copy is queued and no sender started.
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	m.pending.Add(1)
	m.entering.Add(-1)
	if m.final {
		m.pending.Add(-1)
		m.dropped.Add(1)
		j.done()
		return
	}
	select {
	case m.queue <- j:
	default:
		m.pending.Add(-1)
		m.dropped.Add(1)
		j.done()
		return
	}
	// Keep a sender for every pending copy, up to the in-flight limit: with
	// senders >= pending, some sender is idle and takes this copy at once.
	for {
		s := m.senders.Load()
		if s >= m.maxInflight || s >= m.pending.Load() {
			return
		}
		if m.senders.CompareAndSwap(s, s+1) {
			m.wg.Add(1)
			go m.sender()
			return
		}
	}
}

// sender sends queued copies until it has been idle for mirrorIdle or the
// mirror is closed.
func (m *mirrorer) sender() {
	defer m.wg.Done()
	t := time.NewTimer(mirrorIdle)
	defer t.Stop()
	var req fasthttp.RequestHeader
	var resp fasthttp.ResponseHeader
	for {
		select {
		case j := <-m.queue:
			m.send(j, &req, &resp) // its settle takes the copy off pending
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(mirrorIdle)
		case <-t.C:
			if m.retire() {
				return
			}
			t.Reset(mirrorIdle)
		case <-m.stop:
			m.senders.Add(-1)
			return
		}
	}
}

// retire decides whether an idle sender may exit: it leaves, then comes
// back if a copy was queued meanwhile and nobody else can take it.
func (m *mirrorer) retire() bool {
	m.senders.Add(-1)
	for len(m.queue) > 0 {
		s := m.senders.Load()
		if s >= m.pending.Load() || s >= m.maxInflight {
			return true
		}
		if m.senders.CompareAndSwap(s, s+1) {
			return false
		}
	}
	return true
}

// send delivers one copy and reads and discards the answer. A copy whose
// write failed on a kept-alive connection is sent once more on a new one
// (its body is still held then); idle connections the shadow closed are
// found before use by the pool's peek (upstream.go).
func (m *mirrorer) send(j *mirrorJob, req *fasthttp.RequestHeader, resp *fasthttp.ResponseHeader) {
	defer j.done()
	defer req.Reset()
	defer resp.Reset()
	m.inflight.Add(1)
	out, start := sendFailed, time.Time{}
	defer func() { m.settle(out, start, j.bodyLen) }()
	defer func() {
		if p := recover(); p != nil {
			out = sendFailed
			m.log.Error("mirror send panicked", "panic", fmt.Sprint(p))
		}
	}()
	if m.cut.Load() {
		return // close has counted this copy as dropped; nothing goes out after it
	}
	if len(j.cluster.mirrorDests) == 0 {
		m.noteFailure(j, nil, ErrNoDestination)
		return
	}
	d, brk, probe := j.acquireDest()
	if d == nil {
		out = sendDown
		return
	}
	// A send that panics leaves err as it is: a failure for the breaker.
	err := errMirrorAborted
	defer func() { m.noteOutcome(j, d, brk, probe, err) }()
	if j.bodyLen == 0 {
		j.releaseBody()
	}
	start = time.Now()
	deadline := start.Add(j.rm.timeout)
	var retry bool
	retry, err = m.sendOnce(j, d, req, resp, deadline)
	if retry {
		req.Reset()
		resp.Reset()
		_, err = m.sendOnce(j, d, req, resp, deadline)
	}
	if err != nil {
		m.noteFailure(j, d, err)
		return
	}
	out = sendOK
}

// How a send ended, for settle.
const (
	sendFailed = iota // connect/IO error, timeout, no destination, panic
	sendOK            // the shadow answered
	sendDown          // no destination up: dropped (mirror_breaker.go)
)

// settle takes a finished send off pending and counts it, unless close has
// already counted it as dropped at shutdown (cut): the read lock orders the
// two, so each copy is counted once. start is when the copy went to a
// destination; zero when it never did (no latency sample then).
func (m *mirrorer) settle(out int, start time.Time, bodyLen int) {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	m.inflight.Add(-1)
	m.pending.Add(-1)
	if m.cut.Load() {
		return
	}
	switch out {
	case sendDown:
		m.dropDown(1)
		return
	case sendOK:
		m.sent.Add(1)
		m.bodyBytes.Add(uint64(bodyLen))
	default:
		m.failed.Add(1)
	}
	if start.IsZero() {
		return
	}
	lat := time.Since(start)
	m.latN.Add(1)
	m.latSum.Add(uint64(lat))
	for {
		cur := m.latMax.Load()
		if uint64(lat) <= cur || m.latMax.CompareAndSwap(cur, uint64(lat)) {
			break
		}
	}
}

// sendOnce writes the copy to d and reads and discards the answer. retry
// reports a write that failed on a reused connection with the body still
// held: it may be sent once more.
func (m *mirrorer) sendOnce(j *mirrorJob, d *Destination, h *fasthttp.RequestHeader, resp *fasthttp.ResponseHeader, deadline time.Time) (retry bool, err error) {
	j.header.CopyTo(h)
	prepareMirrorRequest(h, j, d)
	c, err := d.up.acquire(deadline)
	if err != nil {
		return false, err
	}
	if err := c.setDeadlines(deadline, nil); err != nil {
		d.up.discard(c)
		return false, err
	}
	d.up.inflight.Add(1)
	defer d.up.inflight.Add(-1)
	var body []byte
	if j.bodyLen > 0 && !j.written {
		body = j.root().body.B[:j.bodyLen]
	}
	// Through the write buffer, as on the main path: the header leaves with
	// the first part of the body.
	bw := c.attachWriter()
	_, err = bw.Write(h.AppendBytes(bw.AvailableBuffer()))
	if err == nil {
		_, err = bw.Write(body)
	}
	if err == nil {
		err = bw.Flush()
	}
	c.detachWriter()
	if err != nil {
		d.up.discard(c)
		return c.reused, err
	}
	// The body is in the kernel's hands: its buffer goes back to the pool
	// now, not when the shadow answers (a slow shadow holds no bodies).
	j.releaseBody()
	if err := readResponseHead(c, resp); err != nil {
		d.up.discard(c)
		return false, err
	}
	reusable, err := drainBody(c, resp, h.IsHead())
	if err != nil {
		d.up.discard(c)
		return false, err
	}
	d.up.finish(c, reusable)
	return false, nil
}

var errMirrorAborted = errors.New("vkp: mirror send aborted")

// noteOutcome tells d's breaker how a copy went, and logs when d goes down
// or comes back.
func (m *mirrorer) noteOutcome(j *mirrorJob, d *Destination, b *breaker, probe bool, err error) {
	if err == nil {
		if b.success(probe) {
			m.log.Info("mirror destination back", "route", j.rm.routeID, "destination", d.Address)
		}
		return
	}
	if backoff := b.failure(probe, monoNow()); backoff > 0 {
		m.log.Warn("mirror destination down for this route: its copies are dropped until a probe succeeds",
			"route", j.rm.routeID, "cluster", j.cluster.ID, "destination", d.Address,
			"next_probe_in", backoff.String(), "last_error", err.Error())
	}
}

// noteFailure logs mirror failures at most once a second, with a count:
// a dead shadow must not flood the log at request rate.
func (m *mirrorer) noteFailure(j *mirrorJob, d *Destination, err error) {
	m.failsSince.Add(1)
	now := time.Now().UnixNano()
	last := m.lastFailLog.Load()
	if now-last < int64(time.Second) || !m.lastFailLog.CompareAndSwap(last, now) {
		return
	}
	dest := ""
	if d != nil {
		dest = d.Address
	}
	m.log.Warn("mirror failures", "count", m.failsSince.Swap(0), "cluster", j.cluster.ID, "destination", dest, "last_error", err.Error())
}

// root is the job that holds the shared body and charges.
func (j *mirrorJob) root() *mirrorJob {
	if j.owner != nil {
		return j.owner
	}
	return j
}

// releaseBody says this job no longer needs the body; the last one returns
// the buffer to the pool and its bytes to the budget. Idempotent per job.
func (j *mirrorJob) releaseBody() {
	if j.written {
		return
	}
	j.written = true
	o := j.root()
	if o.bodyRefs.Add(-1) > 0 {
		return
	}
	o.m.memory.Add(-o.bodyCost)
	o.bodyCost = 0
	if o.body != nil {
		pool.Bodies.Put(o.body)
		o.body = nil
	}
}

// done releases the job; the last one returns the copy cost to the budget.
func (j *mirrorJob) done() {
	j.releaseBody()
	owner := j.root()
	if j != owner {
		j.reset()
		jobPool.Put(j)
	}
	if owner.refs.Add(-1) > 0 {
		return
	}
	owner.m.memory.Add(-int64(len(owner.rm.clusters)) * MirrorCopyCost) // charged by charge
	owner.reset()
	jobPool.Put(owner)
}

func (j *mirrorJob) reset() {
	j.header.Reset()
	j.body = nil
	j.bodyLen = 0
	j.cluster = nil
	j.brks = nil
	j.owner = nil
	j.rm = nil
	j.target = j.target[:0]
	j.written = false
	j.bodyCost = 0
}

// pickForMirror picks among dests (the cluster's mirror destinations, or
// those of them that are up) with the cluster's own policy. Mirror pools are
// separate from the main ones, so mirror sends never skew the main traffic's
// LeastRequests/P2C choices.
func (c *Cluster) pickForMirror(j *mirrorJob, dests []*Destination) *Destination {
	if len(dests) == 1 {
		return dests[0]
	}
	ctx := mirrorCtxPool.Get().(*fasthttp.RequestCtx)
	j.header.CopyTo(&ctx.Request.Header)
	d := c.picker.Pick(ctx, dests)
	ctx.Request.Reset()
	mirrorCtxPool.Put(ctx)
	return d
}

var mirrorCtxPool = sync.Pool{New: func() any { return &fasthttp.RequestCtx{} }}

// prepareMirrorRequest applies the main path's rewrite for the mirror
// destination (target, Host, HTTP/1.1, framing), then the route's
// MirrorHeaders.
func prepareMirrorRequest(h *fasthttp.RequestHeader, j *mirrorJob, d *Destination) {
	rewriteForUpstream(h, j.remoteIP[:j.ipLen], j.tls)
	sb := pool.Scratch.Get()
	sb.B = append(append(sb.B[:0], d.base...), j.target...)
	h.SetRequestURIBytes(sb.B)
	pool.Scratch.Put(sb)
	setUpstreamHost(h, d, h.Host())
	h.SetProtocolBytes(strHTTP11)
	if j.bodyLen > 0 || (!h.IsGet() && !h.IsHead()) {
		h.SetContentLength(j.bodyLen)
	}
	for _, kv := range j.rm.headers {
		h.Set(kv[0], kv[1])
	}
}

// close stops taking copies and waits for queued and in-flight ones until ctx
// ends; what is still queued then is dropped. Senders are stopped and waited
// for until ctx ends; the copies still being sent then are counted as
// dropped (their senders end by their MirrorTimeout, or with the process).
// It reports how many copies finished during close, how many it dropped,
// and how many of those were in flight.
func (m *mirrorer) close(ctx context.Context) (flushed, dropped, inflight uint64) {
	if m.closed.Swap(true) {
		return 0, 0, 0
	}
	before := m.sent.Load() + m.failed.Load()
	// Requests still being served submit their copies as they finish; they
	// are sent if the grace period allows, like the queued ones.
	for (m.pending.Load() > 0 || m.entering.Load() > 0) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	m.closeMu.Lock()
	m.final = true
	m.closeMu.Unlock()
	for {
		select {
		case j := <-m.queue:
			m.pending.Add(-1)
			m.dropped.Add(1)
			dropped++
			j.done()
			continue
		default:
		}
		break
	}
	close(m.stop)
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// With final set and the queue drained, pending is exactly the
		// copies senders have taken and not settled, including one just
		// handed to a sender that has not started sending it.
		m.closeMu.Lock()
		m.cut.Store(true)
		inflight = uint64(m.pending.Load())
		m.dropped.Add(inflight)
		m.closeMu.Unlock()
		dropped += inflight
	}
	return m.sent.Load() + m.failed.Load() - before, dropped, inflight
}

// compileMirror reads a route's Mirror* metadata. Errors name the key.
// lookup returns the cluster of an id (case-insensitive) or nil.
func compileMirror(rc *RouteConfig, lookup func(id string) *Cluster) (*routeMirror, error) {
	names, ok := rc.Metadata.Get("MirrorCluster")
	if !ok || strings.TrimSpace(names) == "" {
		return nil, nil
	}
	path := "ReverseProxy.Routes." + rc.ID + ".Metadata."
	rm := &routeMirror{perMyriad: 10000, timeout: DefaultMirrorTimeout}
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		c := lookup(n)
		if c == nil {
			return nil, fmt.Errorf("%sMirrorCluster: cluster %q is not defined in ReverseProxy.Clusters", path, n)
		}
		if slices.Contains(rm.clusters, c) {
			return nil, fmt.Errorf("%sMirrorCluster: cluster %q is listed twice (each listed cluster gets its own copy)", path, n)
		}
		rm.clusters = append(rm.clusters, c)
	}
	if v, ok := rc.Metadata.Get("MirrorPercent"); ok {
		p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
		if err != nil || p < 0 || p > 100 || math.IsNaN(p) {
			return nil, fmt.Errorf("%sMirrorPercent: %q is not a number from 0 to 100", path, v)
		}
		rm.perMyriad = uint64(math.Round(p * 100))
	}
	if v, ok := rc.Metadata.Get("MirrorMaxBodySize"); ok {
		n, err := ParseSize(v)
		if err != nil {
			return nil, fmt.Errorf("%sMirrorMaxBodySize: %v", path, err)
		}
		rm.maxBody = n
	}
	if v, ok := rc.Metadata.Get("MirrorTimeout"); ok {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%sMirrorTimeout: %q: want a positive duration like \"00:00:05\" or \"5s\"", path, v)
		}
		rm.timeout = d
	}
	if v, ok := rc.Metadata.Get("MirrorHeaders"); ok {
		for _, part := range strings.Split(v, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, val, found := strings.Cut(part, ":")
			k = strings.TrimSpace(k)
			if !found || !isToken(k) {
				return nil, fmt.Errorf("%sMirrorHeaders: %q is not \"Name: value\" (pairs separated by ';')", path, part)
			}
			if mirrorHeaderRefused(k) {
				return nil, fmt.Errorf("%sMirrorHeaders: %q cannot be set: vkp frames each copy itself (Content-Length, Transfer-Encoding and hop-by-hop headers)", path, k)
			}
			rm.headers = append(rm.headers, [2]string{k, strings.TrimSpace(val)})
		}
	}
	return rm, nil
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
