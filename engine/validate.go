package engine

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keys VKProxy understands that vkp accepts but does not act on yet. They
// load with a warning naming the key, so a VKProxy config moves over as is.
var (
	vkproxyTopKeys     = []string{"Sni", "Limit", "DnsRefreshPeriod", "DnsAddressFamily", "ConnectionTimeout", "RouteCahceSize", "RouteComparison"}
	vkproxyRouteCfg    = []string{"Limit", "UdpResponses"}
	vkproxyClusterKeys = []string{"HttpRequest"}
	vkproxyListenKeys  = []string{"UseSni", "SniId", "RouteId"}
	vkproxyHTTPClient  = []string{"SslProtocols", "EnableMultipleHttp2Connections", "EnableMultipleHttp3Connections", "AllowAutoRedirect", "RequestHeaderEncoding", "ResponseHeaderEncoding", "WebProxy"}
)

var lbPolicies = []string{"Random", "RoundRobin", "LeastRequests", "PowerOfTwoChoices", "Hash"}

func (l *loader) load(root *jnode) *Config {
	cfg := &Config{Clusters: map[string]*ClusterConfig{}}
	top := l.object("", root)
	if top == nil {
		l.errs = append(l.errs, "expected the config to be a JSON object")
		return cfg
	}
	rpNode, rpPath := top.get("ReverseProxy")
	rp := l.object(rpPath, rpNode)
	if rp == nil && rpNode == nil {
		msg := "ReverseProxy: missing: nothing to proxy; vkp needs a ReverseProxy section with Routes and Clusters"
		if top != nil && len(top.n.keys) > 0 {
			msg += fmt.Sprintf(" (this file has only %s, which vkp reads beside it)", strings.Join(top.n.keys, ", "))
		}
		l.errs = append(l.errs, msg)
	}

	// Listen is top-level in vkp's examples and inside ReverseProxy in VKProxy's.
	for _, o := range []*obj{top, rp} {
		n, p := o.get("Listen")
		l.listen(cfg, l.object(p, n))
	}

	defTimeout := rp.duration("DefaultProxyTimeout", DefaultProxyTimeout)
	if defTimeout == 0 {
		defTimeout = DefaultProxyTimeout
	}

	cn, cp := rp.get("Clusters")
	clusters := l.object(cp, cn)
	clusters.each(func(id, path string, v *jnode) {
		c := l.cluster(id, path, v)
		if c == nil {
			return
		}
		key := strings.ToLower(id)
		if _, dup := cfg.Clusters[key]; dup {
			return // reported as a duplicate key by object()
		}
		cfg.Clusters[key] = c
	})

	rn, rpath := rp.get("Routes")
	routes := l.object(rpath, rn)
	routes.each(func(id, path string, v *jnode) {
		if r := l.route(cfg, id, path, v, defTimeout); r != nil {
			cfg.Routes = append(cfg.Routes, r)
		}
	})
	ids := make([]string, len(cfg.Routes))
	byID := map[string]*RouteConfig{}
	for i, r := range cfg.Routes {
		ids[i] = r.ID
		byID[r.ID] = r
	}
	cfg.Routes = cfg.Routes[:0]
	for _, id := range sortedIDs(ids) {
		cfg.Routes = append(cfg.Routes, byID[id])
	}
	if rp != nil && len(cfg.Routes) == 0 && len(l.errs) == 0 {
		l.warnf("ReverseProxy.Routes", "no routes: every request will get 404")
	}

	rp.rest(vkproxyTopKeys...)
	sn, sp := top.get("RandomProbabilisticSampler")
	cfg.LogRules = l.samplerRules(l.object(sp, sn), sp)
	if ln, lp := top.get("Logging"); ln != nil {
		l.logLevel(cfg, l.object(lp, ln))
	}
	// Top-level keys other than ReverseProxy and Listen belong to the rest of
	// an appsettings file (Logging, RandomProbabilisticSampler, ...) and are
	// left to the features that read them.
	return cfg
}

// samplerRules reads RandomProbabilisticSampler.Rules (--sampler random):
// CategoryName (at most one '*'), LogLevel (Trace, Debug, Information,
// Warning, Error, Critical, None), EventId, Probability (0 to 1).
func (l *loader) samplerRules(o *obj, path string) []LogRule {
	if o == nil {
		return nil
	}
	n, rpath := o.get("Rules")
	o.rest()
	if n == nil || n.kind == jNull {
		return nil
	}
	if n.kind != jArray {
		l.errorf(rpath, n, "expected an array of rules, got %s", n.kind)
		return nil
	}
	var rules []LogRule
	for i, it := range n.items {
		ip := fmt.Sprintf("%s[%d]", rpath, i)
		ro := l.object(ip, it)
		if ro == nil {
			continue
		}
		var r LogRule
		if cat, ok := ro.str("CategoryName"); ok {
			if strings.Count(cat, "*") > 1 {
				cn, cp := ro.get("CategoryName")
				l.errorf(cp, cn, "%q has more than one '*'", cat)
			}
			r.Category = cat
		}
		if lv, ok := ro.str("LogLevel"); ok {
			level, known := dotnetLevels[strings.ToLower(strings.TrimSpace(lv))]
			if !known {
				ln, lp := ro.get("LogLevel")
				l.errorf(lp, ln, "%q is not a log level: Trace, Debug, Information, Warning, Error, Critical or None", lv)
			}
			r.Level, r.HasLevel = level, true
		}
		if ro.has("EventId") {
			r.EventID, r.HasEvent = ro.integer("EventId", 0), true
		}
		r.Probability = ro.float("Probability", 1)
		if r.Probability < 0 || r.Probability > 1 {
			pn, pp := ro.get("Probability")
			l.errorf(pp, pn, "%v: a probability is from 0 to 1", r.Probability)
		}
		ro.rest()
		rules = append(rules, r)
	}
	return rules
}

// logLevel reads Logging.LogLevel.Default, VKProxy's log level. The
// per-category levels beside it name .NET categories and are not read;
// nor is the rest of Logging (providers, formatters).
func (l *loader) logLevel(cfg *Config, o *obj) {
	if o == nil {
		return
	}
	ln, lp := o.get("LogLevel")
	lo := l.object(lp, ln)
	if lo == nil {
		return
	}
	v, ok := lo.str("Default")
	if !ok {
		return
	}
	level, known := dotnetLevels[strings.ToLower(strings.TrimSpace(v))]
	if !known {
		dn, dp := lo.get("Default")
		l.errorf(dp, dn, "%q is not a log level: Trace, Debug, Information, Warning, Error, Critical or None", v)
		return
	}
	cfg.LogLevel, cfg.HasLogLevel = level, true
}

func (l *loader) listen(cfg *Config, o *obj) {
	o.each(func(id, path string, v *jnode) {
		lo := l.object(path, v)
		if lo == nil {
			return
		}
		lc := ListenConfig{ID: id, Addresses: lo.strs("Address")}
		an, ap := lo.get("Address")
		if len(lc.Addresses) == 0 {
			l.errorf(ap, an, "at least one address is required (e.g. \"127.0.0.1:8080\")")
		}
		for i, a := range lc.Addresses {
			if _, _, err := net.SplitHostPort(a); err != nil {
				l.errorf(fmt.Sprintf("%s[%d]", ap, i), an, "%q is not host:port", a)
			}
		}
		for _, p := range lo.strs("Protocols") {
			switch strings.ToUpper(p) {
			case "HTTP1":
			case "HTTP2", "HTTP3":
				l.warnf(join(path, "Protocols"), "%s not implemented yet; this listener serves HTTP/1.1", p)
			default:
				pn, pp := lo.get("Protocols")
				l.errorf(pp, pn, "protocol %q is not supported (vkp serves HTTP1)", p)
			}
		}
		lo.rest(vkproxyListenKeys...)
		cfg.Listen = append(cfg.Listen, lc)
	})
}

func (l *loader) cluster(id, path string, v *jnode) *ClusterConfig {
	o := l.object(path, v)
	if o == nil {
		return nil
	}
	c := &ClusterConfig{ID: id, LoadBalancingPolicy: DefaultLoadBalancing}
	if s, ok := o.str("LoadBalancingPolicy"); ok {
		n, p := o.get("LoadBalancingPolicy")
		c.LoadBalancingPolicy = ""
		for _, name := range lbPolicies {
			if strings.EqualFold(s, name) {
				c.LoadBalancingPolicy = name
			}
		}
		if c.LoadBalancingPolicy == "" {
			l.errorf(p, n, "unknown policy %q (one of %s)", s, strings.Join(lbPolicies, ", "))
		}
	}
	c.Metadata, _ = o.metadata("Metadata")
	if c.LoadBalancingPolicy == "Hash" {
		// As VKProxy: without a usable HashBy and Key, Hash picks at random.
		by, _ := c.Metadata.Get("HashBy")
		key, _ := c.Metadata.Get("Key")
		why := ""
		switch {
		case strings.TrimSpace(by) == "":
			why = "has no Metadata.HashBy (header, cookie or query)"
		case !slices.Contains([]string{"header", "cookie", "query"}, strings.ToLower(strings.TrimSpace(by))):
			why = fmt.Sprintf("has Metadata.HashBy %q, which vkp does not hash by (header, cookie or query)", by)
		case strings.TrimSpace(key) == "":
			why = "has no Metadata.Key (the header, cookie or query name)"
		}
		if why != "" {
			l.warnf(join(path, "LoadBalancingPolicy"), "cluster %q uses Hash but %s: it picks at random, as VKProxy does", id, why)
			c.LoadBalancingPolicy = "Random"
		}
	}
	for _, k := range []string{"SessionAffinity"} {
		if _, ok := c.Metadata.Get(k); ok {
			l.warnf(join(join(path, "Metadata"), k), "not implemented yet, ignored")
		}
	}

	dn, dp := o.get("Destinations")
	if dn == nil || dn.kind == jNull || (dn.kind == jArray && len(dn.items) == 0) {
		l.errorf(dp, dn, "at least one destination is required")
	} else if dn.kind != jArray {
		l.errorf(dp, dn, "expected an array, got %s", dn.kind)
	} else {
		for i, it := range dn.items {
			ip := fmt.Sprintf("%s[%d]", dp, i)
			do := l.object(ip, it)
			if do == nil {
				if it.kind == jNull {
					l.errorf(ip, it, "destination is null")
				}
				continue
			}
			d := DestinationConfig{}
			d.Address, _ = do.str("Address")
			d.Host, _ = do.str("Host")
			an, ap := do.get("Address")
			if _, err := parseDestination(d.Address); err != nil {
				l.errorf(ap, an, "%v", err)
			}
			do.rest("Metadata", "Health")
			c.Destinations = append(c.Destinations, d)
		}
	}

	hn, hp := o.get("HealthCheck")
	if h := l.object(hp, hn); h != nil {
		an, ap := h.get("Active")
		if a := l.object(ap, an); a != nil && enabled(a) {
			ac := &ActiveHealthCheck{
				Interval: a.duration("Interval", defaultActiveInterval),
				Timeout:  a.duration("Timeout", defaultActiveTimeout),
				Passes:   a.integer("Passes", 1),
				Fails:    a.integer("Fails", 1),
				Method:   "GET",
				Policy:   "Connect",
			}
			if s, ok := a.str("Policy"); ok {
				pn, pp := a.get("Policy")
				switch strings.ToLower(s) {
				case "connect":
					ac.Policy = "Connect"
				case "http":
					ac.Policy = "Http"
				default:
					l.errorf(pp, pn, "unknown policy %q (Connect or Http)", s)
				}
			}
			ac.Path, _ = a.str("Path")
			ac.Query, _ = a.str("Query")
			if m, ok := a.str("Method"); ok && m != "" {
				ac.Method = strings.ToUpper(m)
			}
			if ac.Policy == "Http" && !strings.HasPrefix(ac.Path, "/") {
				l.errorf(join(ap, "Path"), nil, "the Http policy needs a Path starting with '/'")
			}
			if ac.Interval <= 0 {
				l.errorf(join(ap, "Interval"), nil, "must be positive")
			}
			if ac.Passes < 1 || ac.Fails < 1 {
				l.errorf(ap, an, "Passes and Fails must be at least 1")
			}
			if ac.Timeout <= 0 {
				l.errorf(join(ap, "Timeout"), nil, "must be positive")
			}
			a.rest()
			c.HealthCheck.Active = ac
		} else if a != nil {
			markKnown(a, "Enable", "Enabled", "Interval", "Timeout", "Policy", "Path", "Query", "Method", "Passes", "Fails")
		}
		pn, pp := h.get("Passive")
		if p := l.object(pp, pn); p != nil && enabled(p) {
			pc := &PassiveHealthCheck{
				DetectionWindowSize:        p.duration("DetectionWindowSize", defaultActiveInterval),
				MinimalTotalCountThreshold: p.integer("MinimalTotalCountThreshold", 10),
				FailureRateLimit:           p.float("FailureRateLimit", 0.3),
				ReactivationPeriod:         p.duration("ReactivationPeriod", defaultActiveInterval),
			}
			if pc.ReactivationPeriod < pc.DetectionWindowSize {
				pc.ReactivationPeriod = pc.DetectionWindowSize
			}
			if pc.FailureRateLimit <= 0 || pc.FailureRateLimit > 1 {
				l.errorf(join(pp, "FailureRateLimit"), nil, "must be in (0, 1]")
			}
			if pc.DetectionWindowSize <= 0 || pc.MinimalTotalCountThreshold < 1 {
				l.errorf(pp, pn, "DetectionWindowSize must be positive and MinimalTotalCountThreshold at least 1")
			}
			p.rest()
			c.HealthCheck.Passive = pc
		} else if p != nil {
			markKnown(p, "Enable", "Enabled", "DetectionWindowSize", "MinimalTotalCountThreshold", "FailureRateLimit", "ReactivationPeriod")
		}
		h.rest()
	}

	hcn, hcp := o.get("HttpClientConfig")
	if hc := l.object(hcp, hcn); hc != nil {
		c.MaxConnectionsPerServer = hc.integer("MaxConnectionsPerServer", 0)
		if c.MaxConnectionsPerServer < 0 {
			l.errorf(join(hcp, "MaxConnectionsPerServer"), nil, "must not be negative")
		}
		c.InsecureSkipVerify = hc.boolean("DangerousAcceptAnyServerCertificate", false)
		hc.rest(vkproxyHTTPClient...)
	}
	o.rest(vkproxyClusterKeys...)
	return c
}

// enabled reads a health check's switch: "Enable", as VKProxy's code reads
// it, or "Enabled", as VKProxy's documentation writes it.
func enabled(o *obj) bool {
	if o.has("Enabled") {
		return o.boolean("Enabled", false)
	}
	return o.boolean("Enable", false)
}

// markKnown consumes a disabled section's known keys without reading them
// (VKProxy ignores a health check that is not enabled, and so does vkp),
// then reports the rest.
func markKnown(o *obj, keys ...string) {
	for _, k := range keys {
		o.get(k)
	}
	o.rest()
}

func (l *loader) route(cfg *Config, id, path string, v *jnode, defTimeout time.Duration) *RouteConfig {
	o := l.object(path, v)
	if o == nil {
		return nil
	}
	r := &RouteConfig{ID: id}
	r.Order = o.integer("Order", 0)
	r.Timeout = o.duration("Timeout", defTimeout)
	if r.Timeout == 0 {
		r.Timeout = defTimeout
	}
	cid, ok := o.str("ClusterId")
	if cn, cp := o.get("ClusterId"); !ok || strings.TrimSpace(cid) == "" {
		l.errorf(cp, cn, "required: the id of the cluster this route forwards to")
	}
	r.ClusterID = cid

	mn, mp := o.get("Match")
	m := l.object(mp, mn)
	if m == nil {
		l.warnf(mp, "no Match: the route matches every host and path")
	}
	r.Hosts = m.strs("Hosts")
	r.Paths = m.strs("Paths")
	r.Methods = m.strs("Methods")
	r.Statement, _ = m.str("Statement")
	hn, hp := m.get("Hosts")
	for i, h := range r.Hosts {
		if err := checkHostPattern(h); err != nil {
			l.errorf(fmt.Sprintf("%s[%d]", hp, i), hn, "%v", err)
		}
	}
	pn, pp := m.get("Paths")
	for i, p := range r.Paths {
		if err := checkPathPattern(p); err != nil {
			l.errorf(fmt.Sprintf("%s[%d]", pp, i), pn, "%v", err)
		}
	}
	mtn, mtp := m.get("Methods")
	for i, meth := range r.Methods {
		if !isToken(meth) {
			l.errorf(fmt.Sprintf("%s[%d]", mtp, i), mtn, "%q is not an HTTP method", meth)
		}
		r.Methods[i] = strings.ToUpper(meth)
	}
	if len(r.Hosts) == 0 {
		r.Hosts = []string{"*"}
	}
	if len(r.Paths) == 0 {
		r.Paths = []string{"*"}
	}
	m.rest()

	r.Metadata, r.metaKeys = o.metadata("Metadata")
	tn, tp := o.get("Transforms")
	l.transforms(r, tp, tn)
	o.rest(vkproxyRouteCfg...)
	return r
}

// transforms reads a route's Transforms (VKProxy's YARP-style list of
// one-transform objects). vkp acts on RequestHeaderOriginalHost and
// X-Forwarded (with For, Proto, Host); the others are warned about by name.
func (l *loader) transforms(r *RouteConfig, path string, n *jnode) {
	if n == nil || n.kind == jNull {
		return
	}
	if n.kind != jArray {
		l.errorf(path, n, "expected an array of transforms, got %s", n.kind)
		return
	}
	actions := map[string]xfAction{"append": xfAppend, "set": xfSet, "remove": xfRemove, "off": xfOff}
	for i, it := range n.items {
		ip := fmt.Sprintf("%s[%d]", path, i)
		o := l.object(ip, it)
		if o == nil {
			continue
		}
		switch {
		case o.has("RequestHeaderOriginalHost"):
			r.KeepHost = o.boolean("RequestHeaderOriginalHost", false)
		case o.has("X-Forwarded"):
			def, _ := o.str("X-Forwarded")
			act := func(key string, fallback xfAction) xfAction {
				v, ok := o.str(key)
				if !ok {
					return fallback
				}
				a, known := actions[strings.ToLower(strings.TrimSpace(v))]
				if !known {
					an, ap := o.get(key)
					l.errorf(ap, an, "%q: want Set, Append, Remove or Off", v)
				}
				return a
			}
			forA, protoA, hostA := xfAppend, xfSet, xfSet // vkp's default
			if strings.TrimSpace(def) != "" {
				a := act("X-Forwarded", xfAppend)
				forA, protoA, hostA = a, a, a
			}
			r.xf = newXForwarded(act("For", forA), act("Proto", protoA), act("Host", hostA))
			for _, k := range []string{"Prefix", "HeaderPrefix"} {
				if o.has(k) {
					o.get(k)
					l.warnf(join(ip, k), "not implemented yet, ignored")
				}
			}
		default:
			for _, k := range o.n.keys {
				l.warnf(join(ip, k), "transform not implemented yet, ignored")
			}
			markKnownAll(o)
			continue
		}
		o.rest()
	}
}

func checkHostPattern(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("empty host pattern (use \"*\" for any host)")
	case h == "*":
		return nil
	case strings.Contains(h[1:], "*"):
		return fmt.Errorf("%q: '*' is only allowed first (\"*.example.com\") or alone", h)
	case strings.ContainsAny(h, "/ \t"):
		return fmt.Errorf("%q is not a host name", h)
	}
	return nil
}

func checkPathPattern(p string) error {
	switch {
	case p == "*":
		return nil
	case p == "":
		return fmt.Errorf("empty path pattern (use \"*\" for any path)")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must start with '/' (or be \"*\")", p)
	case strings.Contains(strings.TrimSuffix(p, "*"), "*"):
		return fmt.Errorf("%q: '*' is only allowed last (\"/api/*\") or alone", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("%q: a path pattern has no query or fragment", p)
	}
	return nil
}

// destAddr is a parsed destination Address.
type destAddr struct {
	tls     bool
	network string // "tcp"
	addr    string // host:port to dial
	host    string // authority as written: the Host of a request that has none
	base    string // path prefix without trailing '/', may be empty
}

// parseDestination accepts "http(s)://host[:port][/base]", "host:port" and
// VKProxy's unix-socket form "http://unix:/path/to.sock" (a sidecar's app
// often listens on one; requests to it carry Host: localhost unless the
// destination sets Host).
func parseDestination(s string) (destAddr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return destAddr{}, fmt.Errorf("empty address (want \"http://host:port\" or \"host:port\")")
	}
	for _, scheme := range []string{"http://unix:", "https://unix:"} {
		if len(s) > len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			path := s[len(scheme):]
			if !strings.HasPrefix(path, "/") {
				return destAddr{}, fmt.Errorf("%q: a unix socket address is \"http://unix:/absolute/path.sock\"", s)
			}
			return destAddr{network: "unix", addr: path, host: "localhost", tls: scheme[4] == 's'}, nil
		}
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" {
			return destAddr{}, fmt.Errorf("%q: want \"http://host:port[/base]\" or \"host:port\"", s)
		}
		if err := checkPort(port); err != nil {
			return destAddr{}, fmt.Errorf("%q: %v", s, err)
		}
		return destAddr{network: "tcp", addr: s, host: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return destAddr{}, fmt.Errorf("%q: %v", s, err)
	}
	d := destAddr{network: "tcp"}
	switch strings.ToLower(u.Scheme) {
	case "http":
	case "https":
		d.tls = true
	default:
		return destAddr{}, fmt.Errorf("%q: scheme %q is not supported (http or https)", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return destAddr{}, fmt.Errorf("%q: missing host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return destAddr{}, fmt.Errorf("%q: an address has no query, fragment or user info", s)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if d.tls {
			port = "443"
		}
	} else if err := checkPort(port); err != nil {
		return destAddr{}, fmt.Errorf("%q: %v", s, err)
	}
	d.addr = net.JoinHostPort(u.Hostname(), port)
	d.host = u.Host
	d.base = strings.TrimRight(u.EscapedPath(), "/")
	return d, nil
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad port %q", p)
	}
	return nil
}
