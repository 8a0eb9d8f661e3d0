package engine

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// registry holds what outlives config snapshots (DESIGN: "Per-address
// state lives in a host registry outside the snapshots"):
//
//   - connection pools, keyed by address and client options (TLS settings,
//     MaxConnectionsPerServer; mirror traffic has pools of its own), so a
//     reload that keeps a destination keeps its warm connections;
//   - per-address state (in-flight count; health, which health checks set),
//     keyed by address alone, shared by every cluster and snapshot naming
//     the address.
//
// A snapshot records the pools and hosts it uses. When a new snapshot
// replaces it, what the old one used and the new one does not is retired:
// a pool's idle connections close at once, those in use when their exchange
// ends, and a request still finishing on the old snapshot may open one more,
// closed after it (upstream.close).
type registry struct {
	dial           func(string) (net.Conn, error) // Options.Dial
	mirrorInflight int

	mu    sync.Mutex
	pools map[string]*upstream
	hosts map[string]*hostState

	// gen changes whenever some host's availability does; clusters keep
	// their list of available destinations until it moves (Cluster.avail).
	gen atomic.Uint64

	// stores are the cache's stores, metrics the engine's metric set; nil
	// in a dry run's registry, which opens and registers nothing.
	stores  *cacheStores
	metrics *engineMetrics
}

func newRegistry(opts *Options) *registry {
	return &registry{dial: opts.Dial, mirrorInflight: opts.MirrorInflight,
		pools: map[string]*upstream{}, hosts: map[string]*hostState{}}
}

// hostState is the live state of one address, shared by every cluster and
// snapshot naming it. Its availability is set by health checks
// (health.go); a change bumps the registry's generation, so clusters remake
// their lists of available destinations.
type hostState struct {
	key      string
	inflight atomic.Int64 // requests being served (LeastRequests, PowerOfTwoChoices)
	// Copies in flight count apart: they must not steer the main
	// traffic's least-loaded picks.
	mirrorInflight atomic.Int64

	active      atomic.Int32 // activeNone, activeUnknown, activeUp, activeDown (health.go)
	checkers    atomic.Int32 // active checkers probing this address
	passiveDown atomic.Bool  // failing too often in real traffic, until its reactivation
	passive     passiveWindow
	gen         *atomic.Uint64 // the registry's, bumped on every change above
}

// pool returns the pool for a destination address and cluster options,
// creating it once.
func (r *registry) pool(d destAddr, cc *ClusterConfig, mirror bool) *upstream {
	key := fmt.Sprintf("%t|%t|%s|%s|%t|%d", mirror, d.tls, d.network, d.addr, cc.InsecureSkipVerify, cc.MaxConnectionsPerServer)
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.pools[key]; u != nil {
		return u
	}
	maxConns := cc.MaxConnectionsPerServer
	if mirror {
		maxConns = r.mirrorInflight
	}
	var tc *tls.Config
	if d.tls {
		host, _, _ := splitHostPortLoose(d.addr)
		tc = &tls.Config{ServerName: host, InsecureSkipVerify: cc.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in via DangerousAcceptAnyServerCertificate
	}
	u := newUpstream(key, d.network, d.addr, tc, maxConns, r.dial)
	u.mirror = mirror
	r.pools[key] = u
	return u
}

// host returns the state of an address, creating it once.
func (r *registry) host(d destAddr) *hostState {
	key := d.network + "|" + d.addr
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.hosts[key]; h != nil {
		return h
	}
	h := &hostState{key: key, gen: &r.gen}
	r.hosts[key] = h
	return h
}

// retire closes and forgets the pools and hosts old uses and cur does not
// (cur may be nil: everything old uses goes).
func (r *registry) retire(old, cur *Snapshot) {
	if old == nil {
		return
	}
	keep := map[any]bool{}
	if cur != nil {
		for _, u := range cur.pools {
			keep[u] = true
		}
		for _, h := range cur.hosts {
			keep[h] = true
		}
	}
	var closing []*upstream
	r.mu.Lock()
	for _, u := range old.pools {
		if !keep[u] && r.pools[u.key] == u {
			delete(r.pools, u.key)
			closing = append(closing, u)
		}
	}
	for _, h := range old.hosts {
		if !keep[h] && r.hosts[h.key] == h {
			delete(r.hosts, h.key)
		}
	}
	r.mu.Unlock()
	for _, u := range closing {
		u.close()
	}
	if r.metrics != nil {
		r.metrics.release(old.metricNames)
	}
}

// each calls fn for every pool (the janitor's sweep).
func (r *registry) each(fn func(*upstream)) {
	r.mu.Lock()
	ups := make([]*upstream, 0, len(r.pools))
	for _, u := range r.pools {
		ups = append(ups, u)
	}
	r.mu.Unlock()
	for _, u := range ups {
		fn(u)
	}
}
