package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"
)

// Loading a config has two steps, both on the one path that `vkp validate`,
// `serve` and reload share:
//
//  1. decode (config.go, validate.go): the document's shape, key by key,
//     with defaults filled in;
//  2. compile (this file): the snapshot itself: clusters on the registry's
//     pools, routes with their Statement and their stage chain (pipeline.go),
//     the router. Cross references and feature settings are checked here.
//
// Each step collects every problem, named by JSON path and line:col, and
// each problem is reported once. LoadConfig and ParseConfig run both (the
// compile against a scratch registry that opens nothing); Engine.Apply
// compiles again for real, with the same result.

// compiler is one snapshot build.
type compiler struct {
	cfg   *Config
	reg   *registry
	opts  *Options
	snap  *Snapshot
	errs  []string
	warns []string

	seenPools map[*upstream]bool
	seenHosts map[*hostState]bool
	mirrorDst map[*Cluster][]*Destination // mirror destinations, made once per cluster
	metrics   *metricsBuilder
}

func (c *compiler) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, path+": "+fmt.Sprintf(format, args...)+c.cfg.at(path))
}

func (c *compiler) warnf(path, format string, args ...any) {
	c.warns = append(c.warns, path+": "+fmt.Sprintf(format, args...))
}

// compile builds the snapshot of cfg on reg, and returns its warnings. On
// problems it returns a *ConfigError listing all of them (and the snapshot
// must not be used; the caller retires what it registered).
func compile(cfg *Config, reg *registry, opts *Options) (*Snapshot, []string, error) {
	c := &compiler{cfg: cfg, reg: reg, opts: opts,
		snap:      &Snapshot{Config: cfg, Clusters: map[string]*Cluster{}},
		seenPools: map[*upstream]bool{}, seenHosts: map[*hostState]bool{}, mirrorDst: map[*Cluster][]*Destination{}}
	mm := reg.metrics
	if mm == nil {
		mm = newEngineMetrics() // a dry run's: thrown away
	}
	c.metrics = &metricsBuilder{m: mm, seen: map[string]bool{}}
	keys := make([]string, 0, len(cfg.Clusters))
	for k := range cfg.Clusters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cc := cfg.Clusters[k]
		cl := &Cluster{ID: cc.ID, cfg: cc, picker: newPicker(cc, opts.Rand), gen: &reg.gen,
			noDest: []byte(fmt.Sprintf("Service Unavailable: cluster %q has no available destination\n", cc.ID))}
		cl.dests = c.destinations(cc, false)
		cl.upstreamHist = c.metrics.histogram(`vkp_upstream_duration_seconds{cluster="` + labelValue(cc.ID) + `"}`)
		for _, d := range cl.dests {
			hs := d.hs
			c.metrics.gauge(`vkp_destination_up{cluster="`+labelValue(cc.ID)+`",destination="`+labelValue(d.Address)+`"}`, func() float64 {
				if hs.available() {
					return 1
				}
				return 0
			})
		}
		if pc := cc.HealthCheck.Passive; pc != nil {
			cl.passive = &passiveCheck{cfg: *pc, cluster: cc.ID, log: opts.Logger.With("category", CatHealth),
				width: max(int64(pc.DetectionWindowSize)/passiveBuckets, 1)}
		}
		c.snap.Clusters[k] = cl
	}
	for _, rc := range cfg.Routes {
		r := c.route(rc)
		if r != nil {
			c.snap.Routes = append(c.snap.Routes, r)
		}
	}
	c.snap.Router = newRouter(c.snap.Routes)
	c.snap.metricNames = c.metrics.names
	if reg.metrics != nil {
		reg.metrics.adopt(c.snap.metricNames)
	}
	if len(c.errs) > 0 {
		return c.snap, c.warns, &ConfigError{Problems: c.errs, Warnings: c.warns}
	}
	return c.snap, c.warns, nil
}

func (c *compiler) route(rc *RouteConfig) *Route {
	path := "ReverseProxy.Routes." + rc.ID
	r := &Route{ID: rc.ID, cfg: rc, timeout: rc.Timeout, cluster: c.cluster(rc.ClusterID), stats: c.metrics.statusCounters(rc.ID)}
	if r.cluster == nil && strings.TrimSpace(rc.ClusterID) != "" { // a missing one was reported by decode
		if len(c.cfg.Clusters) == 0 {
			c.errorf(path+".ClusterId", "cluster %q is not defined: the config has no ReverseProxy.Clusters; add "+
				`"Clusters": {%q: {"Destinations": [{"Address": "http://host:port"}]}} to ReverseProxy`, rc.ClusterID, rc.ClusterID)
		} else {
			c.errorf(path+".ClusterId", "cluster %q is not defined in ReverseProxy.Clusters", rc.ClusterID)
		}
	}
	if rc.Statement != "" {
		p, err := compileStatement(rc)
		if err != nil {
			c.errs = append(c.errs, err.Error()+c.cfg.at(path+".Match.Statement"))
		} else {
			r.match = p.Eval
			c.snap.readsBody = c.snap.readsBody || p.ReadsBody()
		}
	}
	// Built even for a route without its cluster, so that its stages'
	// problems are reported in the same run.
	r.handler = c.buildChain(r, func(x *exchange) { x.e.forward(x) })
	if r.cluster == nil {
		return nil
	}
	return r
}

// cluster returns the snapshot's cluster of an id (case-insensitive), or
// nil.
func (c *compiler) cluster(id string) *Cluster {
	return c.snap.Clusters[strings.ToLower(strings.TrimSpace(id))]
}

// destinations builds a cluster's destinations on the registry's pools.
// Mirror destinations have pools of their own: a slow shadow that shares an
// address with a main cluster must not take the connections the real
// requests need.
func (c *compiler) destinations(cc *ClusterConfig, mirror bool) []*Destination {
	out := make([]*Destination, 0, len(cc.Destinations))
	for _, dc := range cc.Destinations {
		da, err := parseDestination(dc.Address)
		if err != nil {
			continue // reported by decode
		}
		d := &Destination{
			Address:   dc.Address,
			host:      dc.Host,
			authority: da.host,
			base:      []byte(da.base),
			addr:      da,
			up:        c.reg.pool(da, cc, mirror),
			hs:        c.reg.host(da),
		}
		d.inflight = &d.hs.inflight
		if mirror {
			d.inflight = &d.hs.mirrorInflight
		}
		if !c.seenPools[d.up] {
			c.seenPools[d.up] = true
			c.snap.pools = append(c.snap.pools, d.up)
		}
		if !c.seenHosts[d.hs] {
			c.seenHosts[d.hs] = true
			c.snap.hosts = append(c.snap.hosts, d.hs)
		}
		out = append(out, d)
	}
	return out
}

// mirrorDests returns the cluster's destinations on mirror pools, made
// once per snapshot and shared by the routes mirroring to it.
func (c *compiler) mirrorDests(cl *Cluster) []*Destination {
	if d, ok := c.mirrorDst[cl]; ok {
		return d
	}
	d := c.destinations(cl.cfg, true)
	c.mirrorDst[cl] = d
	cl.mirrorDests = d
	return d
}

// metaPath is the JSON path of one of the route's Metadata keys.
func (r *Route) metaPath(key string) string {
	return "ReverseProxy.Routes." + r.ID + ".Metadata." + key
}

// meta returns a route Metadata value (case-insensitive key).
func (r *Route) meta(key string) (string, bool) { return r.cfg.Metadata.Get(key) }

// accepts reports whether the route's Statement accepts ctx.
func (r *Route) accepts(ctx *fasthttp.RequestCtx) bool {
	return r.match == nil || r.match(ctx)
}
