package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is a loaded, defaulted and validated configuration: the input of a
// Snapshot. Only LoadConfig and ParseConfig produce one.
type Config struct {
	// Listen addresses from the top-level "Listen" (or "ReverseProxy.Listen")
	// section, in id order. Empty when the file has none (serve then uses
	// --listen or its default).
	Listen []ListenConfig
	// Routes sorted by id (case-insensitive), the tie-break order.
	Routes []*RouteConfig
	// Clusters by lower-cased id: ids are case-insensitive, as in VKProxy.
	Clusters map[string]*ClusterConfig
	// Warnings name keys vkp accepts but does not act on yet, and the like.
	Warnings []string
	// LogRules are RandomProbabilisticSampler.Rules: log sampling with
	// --sampler random.
	LogRules []LogRule
	// LogLevel is Logging.LogLevel.Default (VKProxy's appsettings), the
	// log level when --log-level is not given; HasLogLevel says it is set.
	LogLevel    slog.Level
	HasLogLevel bool

	src []byte         // the document, for line:col
	pos map[string]int // lower-cased JSON path → offset of its value
}

// at returns " (line L, col C)" for a JSON path the document has, else "".
func (c *Config) at(path string) string {
	off, ok := c.pos[strings.ToLower(path)]
	if !ok || c.src == nil {
		return ""
	}
	line, col := lineCol(c.src, off)
	return fmt.Sprintf(" (line %d, col %d)", line, col)
}

// ListenConfig is one "Listen.<id>" entry.
type ListenConfig struct {
	ID        string
	Addresses []string
}

// RouteConfig is one "ReverseProxy.Routes.<id>" entry.
type RouteConfig struct {
	ID        string
	Order     int
	ClusterID string
	// Timeout bounds one upstream exchange (connect, send, full response).
	// Default: ReverseProxy.DefaultProxyTimeout, itself 5 minutes.
	Timeout   time.Duration
	Hosts     []string // default ["*"]
	Paths     []string // default ["*"]
	Methods   []string // upper-cased; empty means any method
	Statement string
	Metadata  Metadata
	metaKeys  []string // Metadata's keys as written, in document order
	// KeepHost sends the client's Host upstream (the transform
	// RequestHeaderOriginalHost); by default the destination's Host, else
	// its address's authority, is sent, as in VKProxy.
	KeepHost bool
	xf       *xForwarded // the transform X-Forwarded; nil: vkp's default
}

// ClusterConfig is one "ReverseProxy.Clusters.<id>" entry.
type ClusterConfig struct {
	ID                  string
	LoadBalancingPolicy string // canonical spelling, default "Random"
	Metadata            Metadata
	HealthCheck         HealthCheckConfig
	Destinations        []DestinationConfig
	// MaxConnectionsPerServer from HttpClientConfig bounds the connections
	// in use per destination (requests over it wait); 0: unbounded.
	MaxConnectionsPerServer int
	// InsecureSkipVerify from HttpClientConfig.DangerousAcceptAnyServerCertificate.
	InsecureSkipVerify bool
}

// DestinationConfig is one cluster destination.
type DestinationConfig struct {
	Address string
	Host    string // Host header sent upstream; empty keeps the client's
}

// HealthCheckConfig mirrors VKProxy's HealthCheck section. It is parsed and
// validated; the checks themselves are run by health.go once implemented.
type HealthCheckConfig struct {
	Active  *ActiveHealthCheck
	Passive *PassiveHealthCheck
}

// ActiveHealthCheck probes each destination every Interval.
type ActiveHealthCheck struct {
	Interval time.Duration // default 1m
	Timeout  time.Duration // default 10s
	Policy   string        // "Connect" (default) or "Http"
	Path     string
	Query    string
	Method   string // default GET
	Passes   int    // default 1
	Fails    int    // default 1
}

// PassiveHealthCheck marks destinations down from real traffic failures.
type PassiveHealthCheck struct {
	DetectionWindowSize        time.Duration // default 1m
	MinimalTotalCountThreshold int           // default 10
	FailureRateLimit           float64       // default 0.3
	ReactivationPeriod         time.Duration // default 1m, at least DetectionWindowSize
}

// Metadata is a string map with case-insensitive keys (VKProxy uses
// OrdinalIgnoreCase). Keys are stored lower-cased.
type Metadata map[string]string

// Get returns the value for key, matched case-insensitively.
func (m Metadata) Get(key string) (string, bool) {
	v, ok := m[strings.ToLower(key)]
	return v, ok
}

// Defaults for values a config may leave out.
const (
	DefaultProxyTimeout   = 5 * time.Minute
	DefaultListenAddress  = "127.0.0.1:8080"
	DefaultLoadBalancing  = "Random"
	defaultActiveInterval = time.Minute
	defaultActiveTimeout  = 10 * time.Second
)

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("engine: read config: %w", err)
	}
	return ParseConfig(src)
}

// ParseConfig decodes a config document, fills in defaults and compiles it
// as serve would (against a scratch registry: nothing is opened). On
// failure the error is a *ConfigError listing every problem found, each
// once.
func ParseConfig(src []byte) (*Config, error) {
	root, err := parseJSONC(src)
	if err != nil {
		return nil, &ConfigError{Problems: []string{err.Error()}}
	}
	l := &loader{src: src, pos: map[string]int{}}
	cfg := l.load(root)
	cfg.src, cfg.pos = src, l.pos
	// Compiled even when decoding found problems, on what it could read,
	// so that one run reports them all.
	opts := Options{}
	opts.fill()
	_, warns, err := compile(cfg, newRegistry(&opts), &opts)
	cfg.Warnings = append(l.warns, warns...)
	problems := l.errs
	var ce *ConfigError
	if errors.As(err, &ce) {
		problems = append(problems, ce.Problems...)
	}
	if len(problems) > 0 {
		return nil, &ConfigError{Problems: problems, Warnings: cfg.Warnings}
	}
	return cfg, nil
}

// ConfigError carries every problem of a config that did not load.
type ConfigError struct {
	Problems []string
	Warnings []string
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "config: " + e.Problems[0]
	}
	return fmt.Sprintf("config: %d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// loader accumulates problems so one run reports all of them.
type loader struct {
	src   []byte
	errs  []string
	warns []string
	pos   map[string]int // lower-cased JSON path → value offset
}

func (l *loader) at(n *jnode) string {
	if n == nil {
		return ""
	}
	line, col := lineCol(l.src, n.off)
	return fmt.Sprintf(" (line %d, col %d)", line, col)
}

func (l *loader) errorf(path string, n *jnode, format string, args ...any) {
	l.errs = append(l.errs, path+": "+fmt.Sprintf(format, args...)+l.at(n))
}

func (l *loader) warnf(path string, format string, args ...any) {
	l.warns = append(l.warns, path+": "+fmt.Sprintf(format, args...))
}

// obj reads one JSON object with case-insensitive keys and tracks which keys
// were consumed, so the rest can be reported.
type obj struct {
	l    *loader
	path string
	n    *jnode
	used []bool
}

func (l *loader) object(path string, n *jnode) *obj {
	if n == nil || n.kind == jNull {
		return nil
	}
	if n.kind != jObject {
		l.errorf(path, n, "expected an object, got %s", n.kind)
		return nil
	}
	o := &obj{l: l, path: path, n: n, used: make([]bool, len(n.keys))}
	for i := range n.keys {
		for j := 0; j < i; j++ {
			if strings.EqualFold(n.keys[i], n.keys[j]) {
				l.errorf(join(path, n.keys[i]), &jnode{off: n.koffs[i]}, "duplicate key (keys are case-insensitive; first seen as %q)", n.keys[j])
			}
		}
	}
	return o
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// get returns the value of key (case-insensitive) and marks it used.
func (o *obj) get(key string) (*jnode, string) {
	if o == nil {
		return nil, key
	}
	for i, k := range o.n.keys {
		if strings.EqualFold(k, key) {
			o.used[i] = true
			p := join(o.path, key)
			o.l.pos[strings.ToLower(p)] = o.n.vals[i].off
			return o.n.vals[i], p
		}
	}
	return nil, join(o.path, key)
}

// has reports whether the object has key (case-insensitive).
func (o *obj) has(key string) bool {
	if o == nil {
		return false
	}
	for _, k := range o.n.keys {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// markKnownAll consumes every key of o: the caller has reported them.
func markKnownAll(o *obj) {
	for i := range o.used {
		o.used[i] = true
	}
}

// each visits every entry of a dictionary section (Routes, Clusters).
func (o *obj) each(fn func(key, path string, v *jnode)) {
	if o == nil {
		return
	}
	for i, k := range o.n.keys {
		o.used[i] = true
		p := join(o.path, k)
		o.l.pos[strings.ToLower(p)] = o.n.vals[i].off
		fn(k, p, o.n.vals[i])
	}
}

// rest reports keys nobody consumed: a warning for keys VKProxy knows and vkp
// does not implement yet, an error for anything else (a typo such as
// "Destination" must not silently drop a cluster's addresses).
func (o *obj) rest(vkproxyKeys ...string) {
	if o == nil {
		return
	}
	for i, k := range o.n.keys {
		if o.used[i] {
			continue
		}
		known := false
		for _, vk := range vkproxyKeys {
			if strings.EqualFold(k, vk) {
				known = true
			}
		}
		if known {
			o.l.warnf(join(o.path, k), "not implemented yet, ignored")
		} else {
			o.l.errorf(join(o.path, k), &jnode{off: o.n.koffs[i]}, "unknown key%s", suggest(k))
		}
	}
}

// suggest names the intended key for common misspellings (VKProxy's own docs
// say "Enabled" where its code reads "Enable").
func suggest(k string) string {
	for _, pair := range [][2]string{{"enabled", "Enable"}, {"destination", "Destinations"}, {"route", "Routes"}, {"cluster", "Clusters"}, {"clusterid", "ClusterId"}, {"path", "Paths"}, {"host", "Hosts"}, {"method", "Methods"}} {
		if strings.EqualFold(k, pair[0]) {
			return fmt.Sprintf(" (did you mean %q?)", pair[1])
		}
	}
	return ""
}

// Scalars. VKProxy reads everything through IConfiguration, where every value
// is a string, so "Order": "1" and "Enable": "true" are accepted too.

func (o *obj) str(key string) (string, bool) {
	if o == nil {
		return "", false
	}
	n, path := o.get(key)
	return o.l.asString(path, n)
}

func (l *loader) asString(path string, n *jnode) (string, bool) {
	if n == nil || n.kind == jNull {
		return "", false
	}
	switch n.kind {
	case jString, jNumber:
		return n.text, true
	case jBool:
		return strconv.FormatBool(n.b), true
	}
	l.errorf(path, n, "expected a string, got %s", n.kind)
	return "", false
}

func (o *obj) integer(key string, def int) int {
	if o == nil {
		return def
	}
	n, path := o.get(key)
	if n == nil || n.kind == jNull {
		return def
	}
	if n.kind != jNumber && n.kind != jString {
		o.l.errorf(path, n, "expected an integer, got %s", n.kind)
		return def
	}
	v, err := strconv.Atoi(strings.TrimSpace(n.text))
	if err != nil {
		o.l.errorf(path, n, "expected an integer, got %q", n.text)
		return def
	}
	return v
}

func (o *obj) float(key string, def float64) float64 {
	if o == nil {
		return def
	}
	n, path := o.get(key)
	if n == nil || n.kind == jNull {
		return def
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(n.text), 64)
	if (n.kind != jNumber && n.kind != jString) || err != nil {
		o.l.errorf(path, n, "expected a number, got %s %q", n.kind, n.text)
		return def
	}
	return v
}

func (o *obj) boolean(key string, def bool) bool {
	if o == nil {
		return def
	}
	n, path := o.get(key)
	if n == nil || n.kind == jNull {
		return def
	}
	if n.kind == jBool {
		return n.b
	}
	if n.kind == jString {
		switch strings.ToLower(strings.TrimSpace(n.text)) {
		case "true":
			return true
		case "false":
			return false
		}
	}
	o.l.errorf(path, n, "expected true or false, got %s %q", n.kind, n.text)
	return def
}

func (o *obj) duration(key string, def time.Duration) time.Duration {
	if o == nil {
		return def
	}
	n, path := o.get(key)
	s, ok := o.l.asString(path, n)
	if !ok {
		return def
	}
	d, err := parseDuration(s)
	if err != nil {
		o.l.errorf(path, n, "%q: %v", s, err)
		return def
	}
	if d < 0 {
		o.l.errorf(path, n, "%q: must not be negative", s)
		return def
	}
	return d
}

// strings reads an array of strings; a single string is taken as a one-item
// list, as IConfiguration does.
func (o *obj) strs(key string) []string {
	if o == nil {
		return nil
	}
	n, path := o.get(key)
	if n == nil || n.kind == jNull {
		return nil
	}
	if n.kind == jString {
		return []string{n.text}
	}
	if n.kind != jArray {
		o.l.errorf(path, n, "expected an array of strings, got %s", n.kind)
		return nil
	}
	out := make([]string, 0, len(n.items))
	for i, it := range n.items {
		if it.kind != jString {
			o.l.errorf(fmt.Sprintf("%s[%d]", path, i), it, "expected a string, got %s", it.kind)
			continue
		}
		out = append(out, it.text)
	}
	return out
}

// metadata reads a Metadata dictionary; it also returns the keys as
// written, in document order.
func (o *obj) metadata(key string) (Metadata, []string) {
	if o == nil {
		return Metadata{}, nil
	}
	n, path := o.get(key)
	m := o.l.object(path, n)
	if m == nil {
		return Metadata{}, nil
	}
	md := make(Metadata, len(m.n.keys))
	var keys []string
	m.each(func(k, p string, v *jnode) {
		if s, ok := o.l.asString(p, v); ok {
			md[strings.ToLower(k)] = s
			keys = append(keys, k)
		}
	})
	return md, keys
}

// sortedIDs returns dictionary keys sorted case-insensitively.
func sortedIDs(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := strings.ToLower(out[i]), strings.ToLower(out[j])
		if a != b {
			return a < b
		}
		return out[i] < out[j]
	})
	return out
}
