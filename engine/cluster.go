package engine

import (
	"crypto/tls"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// upstream is the connection pool and live state of one destination address.
// It is shared by every snapshot that names the address, so a reload keeps
// warm connections and in-flight counts (DESIGN: state keyed by address).
type upstream struct {
	key      string // "http://addr" or "https://addr" plus TLS options
	hc       *fasthttp.HostClient
	inflight atomic.Int64
}

// Destination is one configured destination of a cluster in one snapshot.
type Destination struct {
	Address string // as configured
	host    string // Host header to send; "" keeps the client's
	base    []byte // path prefix, no trailing '/'
	tls     bool
	up      *upstream
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

// Destinations returns the cluster's destinations (read-only).
func (c *Cluster) Destinations() []*Destination { return c.dests }

func newHostClient(d destAddr, c *ClusterConfig) *fasthttp.HostClient {
	hc := &fasthttp.HostClient{
		Addr:  d.addr,
		IsTLS: d.tls,
		// A proxy forwards what it was sent: no fasthttp User-Agent, no path
		// normalisation of the client's raw path.
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// Large cookies and headers are common behind gateways.
		ReadBufferSize:  16 << 10,
		WriteBufferSize: 16 << 10,
		MaxConns:        c.MaxConnectionsPerServer,
	}
	if d.tls {
		host, _, _ := splitHostPortLoose(d.addr)
		hc.TLSConfig = &tls.Config{ServerName: host, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in via DangerousAcceptAnyServerCertificate
	}
	return hc
}

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
