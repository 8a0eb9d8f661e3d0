package engine

import (
	"github.com/valyala/fasthttp"
)

// Destination is one configured destination of a cluster in one snapshot.
type Destination struct {
	Address   string // as configured
	host      string // Host header to send; "" keeps the client's
	authority string // the address's host[:port], the Host of a request that had none
	base      []byte // path prefix, no trailing '/'
	tls       bool
	up        *upstream // connection pool, shared by every snapshot naming the address
}

// Inflight is the number of requests this destination's address is serving.
func (d *Destination) Inflight() int64 { return d.up.inflight.Load() }

// Cluster is a set of destinations and the policy that picks among them.
type Cluster struct {
	ID          string
	cfg         *ClusterConfig
	dests       []*Destination
	mirrorDests []*Destination // same addresses on mirror-only pools; nil unless a route mirrors here
	picker      Picker
}

// Pick returns a destination for ctx, or nil when the cluster has none
// available (the caller answers 503).
func (c *Cluster) Pick(ctx *fasthttp.RequestCtx) *Destination {
	switch len(c.dests) {
	case 0:
		return nil
	case 1:
		return c.dests[0]
	}
	return c.picker.Pick(ctx, c.dests)
}

// next returns the destination after d in the cluster's list (d itself
// when it is the only one): where a failed attempt is retried.
func (c *Cluster) next(d *Destination) *Destination {
	for i, x := range c.dests {
		if x == d {
			return c.dests[(i+1)%len(c.dests)]
		}
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
