package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/vkp-proxy/vkp/pool"
)

// The mirror's sending side: copies, the bounded queue, the elastic senders,
// the budget, shutdown. The stage that makes copies is in mirror.go.

// mirrorJob is one request copy. With several mirror clusters, the first
// job (the owner) holds the body and the budget charges, and one sibling job
// per further cluster shares them.
type mirrorJob struct {
	m        *mirrorer
	rm       *routeMirror
	req      fasthttp.Request // the client's header, and target as URI (for the policies' picks)
	target   []byte           // request-target (origin-form) as the client sent it
	body     *pool.Buffer     // owner only; nil once every sibling has written it
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
	j.req.Header.CopyTo(&s.req.Header)
	s.target = append(s.target[:0], j.target...)
	s.req.SetRequestURIBytes(s.target)
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
	j.req.Header.CopyTo(h)
	prepareMirrorRequest(h, j, d)
	c, err := d.up.acquire(deadline)
	if err != nil {
		return false, err
	}
	if err := c.setDeadlines(deadline, nil); err != nil {
		d.up.discard(c)
		return false, err
	}
	d.inflight.Add(1)
	defer d.inflight.Add(-1)
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
	if backoff := b.failure(probe, j.rm.now()); backoff > 0 {
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
	j.req.Reset()
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
