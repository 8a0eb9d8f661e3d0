package engine

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/valyala/fasthttp"
)

// Destination is one configured destination of a cluster in one snapshot.
type Destination struct {
	Address   string // as configured
	host      string // Host header to send; "" keeps the client's
	authority string // the address's host[:port], the Host of a request that had none
	base      []byte // path prefix, no trailing '/'
	addr      destAddr
	up        *upstream     // connection pool, shared by every snapshot naming the address and options
	hs        *hostState    // the address's live state, shared likewise
	inflight  *atomic.Int64 // hs's count of main requests, or of mirror copies for a mirror destination
}

// Inflight is the number of requests this destination's address is serving.
func (d *Destination) Inflight() int64 { return d.inflight.Load() }

// Available reports whether the destination may take requests: the one
// place every policy's pick and the mirror consult. Active and passive
// health checks mark an address down (health.go); the mirror's breaker is a
// further, per-route source of "down" for copies (mirror_breaker.go).
func (d *Destination) Available() bool { return d.hs.available() }

// Cluster is a set of destinations and the policy that picks among them.
type Cluster struct {
	ID          string
	cfg         *ClusterConfig
	dests       []*Destination
	mirrorDests []*Destination // same addresses on mirror-only pools; nil unless a route mirrors here
	picker      Picker
	passive     *passiveCheck // nil: no passive health check
	noDest      []byte        // the 503 body when none is available
	// upstreamHist is vkp_upstream_duration_seconds{cluster}.
	upstreamHist *metrics.PrometheusHistogram

	// The destinations available now, remade when the registry's
	// generation moves (an address's availability changed).
	gen   *atomic.Uint64
	avail atomic.Pointer[availList]
}

type availList struct {
	gen   uint64
	dests []*Destination
}

// available returns the cluster's available destinations. The list is
// remade only after some address's availability changed.
func (c *Cluster) available() []*Destination {
	g := c.gen.Load()
	if a := c.avail.Load(); a != nil && a.gen == g {
		return a.dests
	}
	// Destinations whose first active check has not answered yet are used
	// only when no checked one is up: a new instance gets no traffic
	// before its health check says it is ready, and a starting proxy does
	// not refuse traffic meanwhile.
	a := &availList{gen: g, dests: make([]*Destination, 0, len(c.dests))}
	for _, d := range c.dests {
		if d.Available() && !d.hs.pending() {
			a.dests = append(a.dests, d)
		}
	}
	if len(a.dests) == 0 {
		for _, d := range c.dests {
			if d.Available() {
				a.dests = append(a.dests, d)
			}
		}
	}
	c.avail.Store(a)
	return a.dests
}

// Pick returns a destination for req among the available ones, or nil when
// none is (the caller answers 503).
func (c *Cluster) Pick(req *fasthttp.Request) *Destination {
	ds := c.available()
	switch len(ds) {
	case 0:
		return nil
	case 1:
		return ds[0]
	}
	return c.picker.Pick(req, ds)
}

// next returns the available destination after d in the cluster's list (d
// itself when there is no other): where a failed attempt is retried.
func (c *Cluster) next(d *Destination) *Destination {
	ds := c.available()
	for i, x := range ds {
		if x == d {
			return ds[(i+1)%len(ds)]
		}
	}
	if len(ds) > 0 {
		return ds[0]
	}
	return d
}

// Destinations returns the cluster's destinations (read-only).
func (c *Cluster) Destinations() []*Destination { return c.dests }

func splitHostPortLoose(hp string) (string, string, error) {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			h := hp[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				h = h[1 : len(h)-1]
			}
			return h, hp[i+1:], nil
		}
	}
	return hp, "", nil
}
