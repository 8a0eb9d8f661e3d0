package engine

import (
	"sync/atomic"
	"time"
)

// A shadow that is down (refusing connections, resetting them, or not
// answering within MirrorTimeout) would otherwise cost vkp a connection
// attempt, a body hand-off and a queue slot for every copy, and a hanging
// one would hold --mirror-inflight copies at all times. So each mirror
// destination has a breaker:
//
//   - After breakerTrip consecutive copies to it failed on the transport
//     (connect, write, read or timeout; any HTTP status, 5xx included, is an
//     answer and counts as delivered), it is down for a backoff of
//     breakerBackoffMin, doubling on every failed probe up to
//     breakerBackoffMax.
//   - While it is down, copies for it are dropped before any work is done
//     (no body hand-off, no memory charged) and counted in Dropped and
//     DroppedDown. In a cluster with several destinations, the policy's
//     pick moves on to the next destination that is up.
//   - When the backoff has passed, one copy goes through as a probe; its
//     answer brings the destination back, its failure starts a longer
//     backoff. A shadow that comes back is thus used again within
//     breakerBackoffMax plus one MirrorTimeout.
//
// The state lives with the mirror connection pool of the address, so it
// outlasts config snapshots. The main path has no breaker here: it reports
// each failure to its client, and passive health checks are the cluster's
// HealthCheck setting.
const (
	breakerTrip       = 5
	breakerBackoffMin = time.Second
	breakerBackoffMax = 30 * time.Second
)

type breaker struct {
	fails    atomic.Int32 // consecutive transport failures
	downTill atomic.Int64 // unix nanoseconds; 0: up
	backoff  atomic.Int64 // the current backoff, nanoseconds
	probing  atomic.Bool  // a probe copy is out
}

// mirrorUp reports whether some mirror destination of c could take a copy
// now (as a probe, if its backoff has passed). It claims nothing: the mirror
// stage asks it before doing any work for a copy. Reading the clock only
// when a destination is down keeps the common case at one atomic load.
func (c *Cluster) mirrorUp() bool {
	var now int64
	for _, d := range c.mirrorDests {
		b := &d.up.brk
		t := b.downTill.Load()
		if t == 0 {
			return true
		}
		if now == 0 {
			now = time.Now().UnixNano()
		}
		if now >= t && !b.probing.Load() {
			return true
		}
	}
	return false
}

// acquireMirror claims a destination for j: the policy's pick if it is up,
// else the next one in the cluster that is. nil: all are down.
func (c *Cluster) acquireMirror(j *mirrorJob) (d *Destination, probe bool) {
	first := c.pickForMirror(j)
	if first == nil {
		return nil, false
	}
	now := time.Now().UnixNano()
	if ok, probe := first.up.brk.acquire(now); ok {
		return first, probe
	}
	i := 0
	for i < len(c.mirrorDests) && c.mirrorDests[i] != first {
		i++
	}
	for k := 1; k < len(c.mirrorDests); k++ {
		d := c.mirrorDests[(i+k)%len(c.mirrorDests)]
		if ok, probe := d.up.brk.acquire(now); ok {
			return d, probe
		}
	}
	return nil, false
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
	b.fails.Store(0)
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
