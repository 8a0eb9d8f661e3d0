package engine

import (
	"bytes"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"
)

// Router picks the route for a request. It is compiled once per snapshot and
// read concurrently; Match allocates nothing.
//
// Precedence (DESIGN.md): host specificity (exact > longer *suffix > "*"),
// then Order (lower first), then path specificity (exact > longer prefix* >
// "*"), then route id, then the pattern's position in the route. Candidates
// are tried in that order; one whose Methods or Statement rejects the request
// passes to the next (VKProxy answers 404 there, vkp falls through).
//
// A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)
// is matched as the method it asks about, Statement included, so that the
// route of the actual request answers it (a GET-only route gets its
// preflights); when no route takes that method, it is matched as the
// OPTIONS it is.
//
// Host and path matching are case-insensitive (VKProxy's default
// RouteComparison is OrdinalIgnoreCase). A host pattern without a port
// matches the host on any port; one with a port matches that port only.
type Router struct {
	exact    map[string][]*entry // lower-cased host[:port] → candidates, ordered
	suffixes []suffixGroup       // longest suffix first
	any      []*entry            // host "*"
}

type suffixGroup struct {
	suffix  string // lower-cased, without the '*'
	hasPort bool
	entries []*entry
}

type entry struct {
	route    *Route
	order    int
	pathKind int    // 0 "*", 1 prefix, 2 exact
	path     string // lower-cased; prefix without its '*'
	seq      int    // position of this pattern among the route's, for stable ties
	methods  []string
}

func (e *entry) matchPath(p []byte) bool {
	switch e.pathKind {
	case 0:
		return true
	case 1:
		return len(p) >= len(e.path) && asciiEqualFold(p[:len(e.path)], e.path)
	default:
		return len(p) == len(e.path) && asciiEqualFold(p, e.path)
	}
}

func (e *entry) matchMethod(m []byte) bool {
	if len(e.methods) == 0 {
		return true
	}
	for _, want := range e.methods {
		if asciiEqualFold(m, want) {
			return true
		}
	}
	return false
}

// less orders candidates within one host group.
func (e *entry) less(o *entry) bool {
	if e.order != o.order {
		return e.order < o.order
	}
	if e.pathKind != o.pathKind {
		return e.pathKind > o.pathKind
	}
	if len(e.path) != len(o.path) {
		return len(e.path) > len(o.path)
	}
	if e.route.ID != o.route.ID {
		return routeIDLess(e.route.ID, o.route.ID)
	}
	return e.seq < o.seq
}

func routeIDLess(a, b string) bool {
	la, lb := strings.ToLower(a), strings.ToLower(b)
	if la != lb {
		return la < lb
	}
	return a < b
}

// newRouter compiles the routes' host and path patterns.
func newRouter(routes []*Route) *Router {
	rt := &Router{exact: map[string][]*entry{}}
	suffix := map[string]*suffixGroup{}
	for _, r := range routes {
		seq := 0
		for _, h := range hostVariants(r.cfg.Hosts) {
			for _, p := range r.cfg.Paths {
				e := &entry{route: r, order: r.cfg.Order, seq: seq, methods: r.cfg.Methods}
				seq++
				switch {
				case p == "*":
					e.pathKind = 0
				case strings.HasSuffix(p, "*"):
					e.pathKind, e.path = 1, strings.ToLower(strings.TrimSuffix(p, "*"))
				default:
					e.pathKind, e.path = 2, strings.ToLower(p)
				}
				h := strings.ToLower(h)
				switch {
				case h == "*":
					rt.any = append(rt.any, e)
				case strings.HasPrefix(h, "*"):
					g := suffix[h]
					if g == nil {
						g = &suffixGroup{suffix: h[1:], hasPort: hostHasPort(h[1:])}
						suffix[h] = g
					}
					g.entries = append(g.entries, e)
				default:
					rt.exact[h] = append(rt.exact[h], e)
				}
			}
		}
	}
	sortEntries := func(es []*entry) {
		sort.SliceStable(es, func(i, j int) bool { return es[i].less(es[j]) })
	}
	for _, es := range rt.exact {
		sortEntries(es)
	}
	for _, g := range suffix {
		sortEntries(g.entries)
		rt.suffixes = append(rt.suffixes, *g)
	}
	sort.Slice(rt.suffixes, func(i, j int) bool {
		a, b := rt.suffixes[i], rt.suffixes[j]
		if len(a.suffix) != len(b.suffix) {
			return len(a.suffix) > len(b.suffix)
		}
		return a.suffix < b.suffix
	})
	sortEntries(rt.any)
	return rt
}

// hostVariants adds, for each localhost pattern, the loopback addresses it
// stands for: "localhost:5000" also matches Host 127.0.0.1:5000 and
// [::1]:5000, as in VKProxy.
func hostVariants(hosts []string) []string {
	out := hosts
	for _, h := range hosts {
		name, port := h, ""
		if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h, "]") {
			name, port = h[:i], h[i:]
		}
		if strings.EqualFold(name, "localhost") {
			if len(out) == len(hosts) {
				out = append([]string(nil), hosts...)
			}
			out = append(out, "127.0.0.1"+port, "[::1]"+port)
		}
	}
	return out
}

// hostHasPort reports whether a host (or host pattern) ends in :port.
func hostHasPort(h string) bool {
	i := strings.LastIndexByte(h, ':')
	return i >= 0 && i > strings.LastIndexByte(h, ']')
}

// Match returns the route for ctx, or nil.
func (rt *Router) Match(ctx *fasthttp.RequestCtx) *Route {
	if m := preflightMethod(&ctx.Request.Header); m != nil {
		// The Statement reads the method from ctx: it is set for the
		// match and put back (m points into the header, which stays).
		h := &ctx.Request.Header
		h.SetMethodBytes(m)
		r := rt.match(ctx)
		h.SetMethod(fasthttp.MethodOptions)
		if r != nil {
			return r
		}
	}
	return rt.match(ctx)
}

func (rt *Router) match(ctx *fasthttp.RequestCtx) *Route {
	var buf [256]byte
	host := ctx.Request.Header.Host()
	path := ctx.Path()
	method := ctx.Method()
	if len(host) > len(buf) {
		// Longer than any DNS name: only host "*" routes can match it.
		return matchIn(rt.any, ctx, path, method)
	}
	n := copy(buf[:], host)
	lower := buf[:n]
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	noPort := lower
	if i := bytes.LastIndexByte(lower, ':'); i >= 0 && i > bytes.LastIndexByte(lower, ']') {
		noPort = lower[:i]
	}

	if r := matchIn(rt.exact[string(lower)], ctx, path, method); r != nil {
		return r
	}
	if len(noPort) != len(lower) {
		if r := matchIn(rt.exact[string(noPort)], ctx, path, method); r != nil {
			return r
		}
	}
	for i := range rt.suffixes {
		g := &rt.suffixes[i]
		h := noPort
		if g.hasPort {
			h = lower
		}
		if len(h) >= len(g.suffix) && string(h[len(h)-len(g.suffix):]) == g.suffix {
			if r := matchIn(g.entries, ctx, path, method); r != nil {
				return r
			}
		}
	}
	return matchIn(rt.any, ctx, path, method)
}

func matchIn(es []*entry, ctx *fasthttp.RequestCtx, path, method []byte) *Route {
	for _, e := range es {
		if e.matchPath(path) && e.matchMethod(method) && e.route.accepts(ctx) {
			return e.route
		}
	}
	return nil
}
