package engine

import (
	"sync/atomic"
	"time"
)

// A shadow that is down (refusing connections, resetting them, or not
// answering within MirrorTimeout) would otherwise cost vkp a connection
// attempt, a body hand-off and a queue slot for every copy, and a hanging
// one would hold --mirror-inflight copies at all times. So each route keeps
// a breaker per mirror destination:
//
//   - After breakerTrip consecutive copies from the route to it failed on
//     the transport (connect, write, read or timeout; any HTTP status, 5xx
//     included, is an answer and counts as delivered), it is down for the
//     route for a backoff of breakerBackoffMin, doubling on every failed
//     probe up to breakerBackoffMax.
//   - While it is down, the route's copies for it are dropped before any
//     work is done (no body hand-off, no memory charged) and counted in
//     Dropped and DroppedDown. In a cluster with several destinations, the
//     cluster's policy picks among the ones that are up, so their shares
//     stay even (LeastRequests would otherwise favour the idle, down one).
//   - When the backoff has passed, one copy goes through as a probe; its
//     answer brings the destination back, its failure starts a longer
//     backoff. A shadow that comes back is thus used again within
//     breakerBackoffMax plus one MirrorTimeout.
//
// Per route, because MirrorTimeout is per route: a route whose copies time
// out on a slow endpoint must not stop another route's copies to the same
// shadow. A refusing shadow is thus learnt once per route, and the state
// starts over with each config snapshot. The main path has no breaker here:
// it reports each failure to its client, and passive health checks are the
// cluster's HealthCheck setting. Times are monotonic (monoNow), so a step of
// the wall clock cannot hold a destination down.
const (
	breakerTrip       = 5
	breakerBackoffMin = time.Second
	breakerBackoffMax = 30 * time.Second
)

type breaker struct {
	fails    atomic.Int32 // consecutive transport failures
	downTill atomic.Int64 // monoNow until which the destination is down; 0: up
	backoff  atomic.Int64 // the current backoff, nanoseconds
	probing  atomic.Bool  // a probe copy is out
}

// monoNow is nanoseconds on the monotonic clock since the process started;
// never 0 in practice, which breaker.downTill uses for "up".
func monoNow() int64 { return int64(time.Since(monoStart)) }

var monoStart = time.Now()

// upAt reports whether a copy could be sent now (as a probe, if the backoff
// has passed). It claims nothing.
func (b *breaker) upAt(now int64) bool {
	t := b.downTill.Load()
	return t == 0 || (now >= t && !b.probing.Load())
}

// anyUp reports whether one of the route's mirror destinations in cluster i
// could take a copy now. The mirror stage asks before doing any work for a
// copy; reading the clock only when a destination is down keeps the common
// case at one atomic load.
func (m *routeMirror) anyUp(i int) bool {
	var now int64
	dests := m.clusters[i].mirrorDests
	for k := range m.brks[i] {
		if !dests[k].Available() { // health checks: the one source of "down" beside the breaker
			continue
		}
		b := &m.brks[i][k]
		if b.downTill.Load() == 0 {
			return true
		}
		if now == 0 {
			now = m.now()
		}
		if b.upAt(now) {
			return true
		}
	}
	return false
}

// acquireDest claims a destination of j's cluster for j with the cluster's
// policy: over all of them while none is down, else over the ones that are
// up. nil: every destination is down for this route.
func (j *mirrorJob) acquireDest() (d *Destination, b *breaker, probe bool) {
	dests, brks := j.cluster.mirrorDests, j.brks
	allUp := true
	for k := range brks {
		if brks[k].downTill.Load() != 0 || !dests[k].Available() {
			allUp = false
			break
		}
	}
	now := j.rm.now()
	if allUp {
		d = j.cluster.pickForMirror(j, dests)
		b = &brks[destIndex(dests, d)]
		if ok, probe := b.acquire(now); ok {
			return d, b, probe
		}
	}
	var buf [16]*Destination
	up := buf[:0]
	for k := range brks {
		if brks[k].upAt(now) && dests[k].Available() {
			up = append(up, dests[k])
		}
	}
	for len(up) > 0 {
		d = j.cluster.pickForMirror(j, up)
		b = &brks[destIndex(dests, d)]
		if ok, probe := b.acquire(now); ok {
			return d, b, probe
		}
		i := destIndex(up, d) // lost a race for the probe: pick among the rest
		up[i] = up[len(up)-1]
		up = up[:len(up)-1]
	}
	return nil, nil, false
}

func destIndex(ds []*Destination, d *Destination) int {
	for i := range ds {
		if ds[i] == d {
			return i
		}
	}
	panic("vkp: picked destination not in the list")
}

// acquire claims the right to send a copy: always when up, once (the
// probe) when the backoff has passed.
func (b *breaker) acquire(now int64) (ok, probe bool) {
	t := b.downTill.Load()
	if t == 0 {
		return true, false
	}
	if now < t || !b.probing.CompareAndSwap(false, true) {
		return false, false
	}
	return true, true
}

// success records an answer; it reports whether the destination came back.
func (b *breaker) success(probe bool) (back bool) {
	if b.fails.Load() != 0 { // a read, not a write, per answered copy: senders share this line
		b.fails.Store(0)
	}
	if b.downTill.Load() != 0 {
		b.downTill.Store(0)
		b.backoff.Store(0)
		back = true
	}
	if probe {
		b.probing.Store(false)
	}
	return back
}

// failure records a transport failure; it returns the backoff when it put
// the destination down (0 otherwise). Failures of copies sent before the
// destination went down do not extend the backoff; a failed probe doubles it.
func (b *breaker) failure(probe bool, now int64) time.Duration {
	n := b.fails.Add(1)
	if !probe && n < breakerTrip {
		return 0
	}
	d := min(max(2*time.Duration(b.backoff.Load()), breakerBackoffMin), breakerBackoffMax)
	if probe {
		b.downTill.Store(now + int64(d))
		b.probing.Store(false)
	} else if !b.downTill.CompareAndSwap(0, now+int64(d)) {
		return 0 // already down
	}
	b.backoff.Store(int64(d))
	return d
}
