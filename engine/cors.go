package engine

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// CORS: a route whose Metadata has Access-Control-Allow-Origin or
// Access-Control-Allow-Origin-Regex gets the CORS response headers from
// vkp, whatever its origin server does about them.
//
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
//     is routed as the method it asks about (Router.Match) and answered by
//     this stage with 204: the allow headers when the Origin is allowed,
//     none otherwise (the browser then refuses). It never reaches the cache,
//     a shadow or the origin.
//   - Any other request, of any method, is forwarded; its answer (from the
//     origin, the cache, or vkp's own error) gets Access-Control-Allow-Origin
//     and Allow-Credentials, Expose-Headers when the Origin is allowed. The
//     origin server's Access-Control-* fields are removed first: the route's
//     settings replace them, never sit beside them.
//   - An answer that depends on Origin (any setting but a plain "*") says
//     so with Vary: Origin, merged into the Vary it has, whether the request
//     had an Origin or not, so that no cache hands one origin's answer to
//     another. With "*" every answer carries Access-Control-Allow-Origin: *,
//     Origin or not, and does not vary.
//
// Every header value is built when the snapshot is compiled; a request
// compares its Origin with the literal list (a loop) and, when configured,
// the regex, and copies bytes.

// corsStage is CORS's place in a route's pipeline (pipeline.go).
var corsStage = stage{
	name:  "cors",
	keys:  corsKeys,
	build: buildCORS,
}

// corsKeys are the route Metadata keys of CORS: the two that turn it on,
// then the others.
var corsKeys = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Origin-Regex", "Access-Control-Allow-Headers",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Credentials", "Access-Control-Max-Age",
	"Access-Control-Expose-Headers",
}

// The CORS header names, as vkp writes them.
const (
	hdrACAO = "Access-Control-Allow-Origin"
	hdrACAC = "Access-Control-Allow-Credentials"
	hdrACAM = "Access-Control-Allow-Methods"
	hdrACAH = "Access-Control-Allow-Headers"
	hdrACMA = "Access-Control-Max-Age"
	hdrACEH = "Access-Control-Expose-Headers"
	hdrACRM = "Access-Control-Request-Method"
	hdrACRH = "Access-Control-Request-Headers"
)

var (
	corsStar = []byte("*")
	corsTrue = []byte("true")
	corsVary = []byte("Origin")
)

// routeCORS is a route's compiled CORS settings. A nil slice means "not
// sent" (or, for methods and headers, "echo the preflight's request").
type routeCORS struct {
	star    bool           // Allow-Origin "*"
	origins []string       // literal origins, compared without regard to ASCII case
	re      *regexp.Regexp // Allow-Origin-Regex, anchored and case-insensitive; nil if none
	creds   bool
	methods []byte // Allow-Methods; nil: echo Access-Control-Request-Method
	headers []byte // Allow-Headers; nil: echo Access-Control-Request-Headers
	maxAge  []byte
	expose  []byte
	// preVary is the Vary of a preflight answer: Origin, and the request
	// fields it echoes.
	preVary []byte
}

func buildCORS(c *compiler, r *Route, next handler) handler {
	rc := c.compileCORS(r)
	if rc == nil {
		return next
	}
	return func(x *exchange) {
		if m := preflightMethod(&x.ctx.Request.Header); m != nil {
			rc.preflight(x.ctx, m)
			return
		}
		next(x)
		rc.actual(x.ctx)
	}
}

// preflightMethod returns the method a CORS preflight asks about (its
// Access-Control-Request-Method), or nil when the request is not one: a
// preflight is an OPTIONS with an Origin and a request method that is a
// token. The result points into h.
func preflightMethod(h *fasthttp.RequestHeader) []byte {
	if !h.IsOptions() || len(h.Peek("Origin")) == 0 {
		return nil
	}
	m := h.Peek(hdrACRM)
	if len(m) == 0 || !isTokenBytes(m) {
		return nil
	}
	return m
}

// allowed reports whether the route allows a request's Origin value.
func (rc *routeCORS) allowed(origin []byte) bool {
	if rc.star {
		return true
	}
	if len(origin) == 0 {
		return false
	}
	for _, o := range rc.origins {
		if asciiEqualFold(origin, o) {
			return true
		}
	}
	return rc.re != nil && rc.re.Match(origin)
}

// preflight answers a preflight with 204 and, for an allowed Origin, the
// allow headers. method is the preflight's Access-Control-Request-Method.
func (rc *routeCORS) preflight(ctx *fasthttp.RequestCtx, method []byte) {
	rq := &ctx.Request.Header
	h := &ctx.Response.Header
	h.SetStatusCode(fasthttp.StatusNoContent)
	if rc.preVary != nil {
		h.SetBytesV("Vary", rc.preVary)
	}
	origin := rq.Peek("Origin")
	if !rc.allowed(origin) {
		return
	}
	rc.setOrigin(h, origin)
	switch {
	case rc.methods != nil:
		h.SetBytesV(hdrACAM, rc.methods)
	default:
		h.SetBytesV(hdrACAM, method)
	}
	switch {
	case rc.headers != nil:
		h.SetBytesV(hdrACAH, rc.headers)
	default:
		if rh := rq.Peek(hdrACRH); len(rh) > 0 {
			h.SetBytesV(hdrACAH, rh)
		}
	}
	if rc.maxAge != nil {
		h.SetBytesV(hdrACMA, rc.maxAge)
	}
}

// actual sets the CORS fields of a forwarded request's answer.
func (rc *routeCORS) actual(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if hasCORSField(h.All()) {
		stripCORS(h)
	}
	if !rc.star {
		addVaryOrigin(h)
	}
	origin := ctx.Request.Header.Peek("Origin")
	if !rc.allowed(origin) {
		return
	}
	rc.setOrigin(h, origin)
	if rc.expose != nil {
		h.SetBytesV(hdrACEH, rc.expose)
	}
}

// setOrigin sets Access-Control-Allow-Origin (the request's Origin, or
// "*") and Allow-Credentials.
func (rc *routeCORS) setOrigin(h *fasthttp.ResponseHeader, origin []byte) {
	if rc.star {
		h.SetBytesV(hdrACAO, corsStar)
	} else {
		h.SetBytesV(hdrACAO, origin)
	}
	if rc.creds {
		h.SetBytesV(hdrACAC, corsTrue)
	}
}

// isCORSName reports whether a response field name is Access-Control-*.
func isCORSName(k []byte) bool {
	const p = "access-control-"
	return len(k) > len(p) && asciiEqualFold(k[:len(p)], p)
}

// hasCORSField reports whether some header is Access-Control-*: the
// common answer has none, and is not touched.
func hasCORSField(all headerSeq) bool {
	for k := range all {
		if isCORSName(k) {
			return true
		}
	}
	return false
}

// stripCORS removes the origin server's Access-Control-* fields without
// reordering the lines of the fields that stay (fasthttp's Del moves the
// last line into the deleted one's place; hopheaders.go has the same
// care). Only answers that carry such fields come here.
func stripCORS(h *fasthttp.ResponseHeader) {
	rep := newRepeated()
	for k, v := range h.All() { // here, not in a helper: see newRepeated
		if !isCORSName(k) {
			rep.collect(k, v, 0, apartInResponses)
		}
	}
	rep.keepRepeated(nil)
	var nb [64]byte
	for {
		var name []byte
		for k := range h.All() {
			if isCORSName(k) {
				name = append(nb[:0], k...) // a copy: the delete moves what k points into
				break
			}
		}
		if name == nil {
			break
		}
		h.DelBytes(name)
		if hasName(h.All(), name) {
			break // a name fasthttp could not normalize; left (rare, and not a CORS field a browser reads)
		}
	}
	rep.restore(h.DelBytes, h.AddBytesKV, nil)
}

// hasName reports whether a field named exactly name is still there.
func hasName(all headerSeq, name []byte) bool {
	for k := range all {
		if string(k) == string(name) {
			return true
		}
	}
	return false
}

// addVaryOrigin adds Origin to the answer's Vary: to its one Vary line,
// or as a line of its own, unless Vary already names Origin or is "*".
func addVaryOrigin(h *fasthttp.ResponseHeader) {
	lines := h.PeekAll("Vary")
	if hasListToken(lines, "Origin") || hasListToken(lines, "*") {
		return
	}
	if len(lines) == 1 {
		if v := trimOWS(lines[0]); len(v) > 0 {
			var b [256]byte
			m := append(append(append(b[:0], v...), ", "...), corsVary...)
			h.SetBytesV("Vary", m)
			return
		}
		h.SetBytesV("Vary", corsVary)
		return
	}
	h.AddBytesV("Vary", corsVary)
}

// compileCORS reads a route's CORS Metadata (nil: the route has none, or
// a problem, reported with the key's JSON path).
func (c *compiler) compileCORS(r *Route) *routeCORS {
	ao, hasAO := r.meta(hdrACAO)
	reSrc, hasRE := r.meta("Access-Control-Allow-Origin-Regex")
	if !hasAO && !hasRE {
		for _, k := range corsKeys[2:] {
			if _, ok := r.meta(k); ok {
				c.warnf(r.metaPath(k), "has no effect: the route has no Access-Control-Allow-Origin or Access-Control-Allow-Origin-Regex")
			}
		}
		return nil
	}
	nerr := len(c.errs)
	rc := &routeCORS{}
	if hasAO {
		rc.star, rc.origins = c.corsOrigins(r, ao)
	}
	if hasRE {
		p := r.metaPath("Access-Control-Allow-Origin-Regex")
		switch {
		case strings.TrimSpace(reSrc) == "":
			c.errorf(p, "empty: want a regular expression matching whole Origin values, like https://.*\\.example\\.com")
		case rc.star:
			c.errorf(p, "Access-Control-Allow-Origin is \"*\", which allows every origin: a regex beside it changes nothing "+
				"(VKProxy would use the regex alone); keep one of the two")
		default:
			// Checked alone first, so that an error quotes what was
			// written, not the anchored form.
			_, err := regexp.Compile(reSrc)
			if err == nil {
				rc.re, err = regexp.Compile(`(?i)^(?:` + reSrc + `)$`)
			}
			if err != nil {
				c.errorf(p, "%v", err)
			}
		}
	}
	if v, ok := r.meta(hdrACAC); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			rc.creds = true
		case "false":
		default:
			c.errorf(r.metaPath(hdrACAC), "%q: want true or false", v)
		}
		if rc.creds && rc.star {
			c.errorf(r.metaPath(hdrACAC), "true with Access-Control-Allow-Origin \"*\": browsers refuse credentialed "+
				"answers with \"*\"; list the origins (or use Access-Control-Allow-Origin-Regex), which vkp then echoes")
		}
	}
	if v, ok := r.meta(hdrACAM); ok {
		rc.methods = c.corsList(r, hdrACAM, v, "method", true)
	}
	if v, ok := r.meta(hdrACAH); ok {
		rc.headers = c.corsList(r, hdrACAH, v, "header name", true)
	}
	if v, ok := r.meta(hdrACEH); ok {
		rc.expose = c.corsList(r, hdrACEH, v, "header name", false)
		if rc.creds && string(rc.expose) == "*" {
			c.errorf(r.metaPath(hdrACEH), "\"*\" with Access-Control-Allow-Credentials true: browsers then read \"*\" "+
				"as a header name; list the headers")
		}
	}
	if v, ok := r.meta(hdrACMA); ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
		if err != nil {
			c.errorf(r.metaPath(hdrACMA), "%q: want a whole number of seconds, 0 or more", v)
		}
		rc.maxAge = strconv.AppendUint(nil, n, 10)
	}
	if len(c.errs) > nerr {
		return nil
	}
	var vary []string
	if !rc.star {
		vary = append(vary, "Origin")
	}
	if rc.methods == nil {
		vary = append(vary, hdrACRM)
	}
	if rc.headers == nil {
		vary = append(vary, hdrACRH)
	}
	if len(vary) > 0 {
		rc.preVary = []byte(strings.Join(vary, ", "))
	}
	return rc
}

// corsOrigins reads Access-Control-Allow-Origin: "*", or a comma list of
// origins (scheme://host[:port], or "null").
func (c *compiler) corsOrigins(r *Route, v string) (star bool, origins []string) {
	p := r.metaPath(hdrACAO)
	bad := false
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			continue
		case o == "*":
			star = true
			continue
		}
		if err := checkOrigin(o); err != nil {
			c.errorf(p, "%q: %v", o, err)
			bad = true
			continue
		}
		origins = append(origins, o)
	}
	switch {
	case star && (len(origins) > 0 || bad):
		c.errorf(p, "%q: \"*\" allows every origin and stands alone; list origins, or write \"*\"", v)
	case !star && len(origins) == 0 && !bad:
		c.errorf(p, "empty: want \"*\" or a comma-separated list of origins like https://app.example.com")
	}
	return star, origins
}

// checkOrigin checks that o is written as browsers send Origin:
// scheme://host[:port], or "null"; what is not never matches.
func checkOrigin(o string) error {
	if strings.EqualFold(o, "null") {
		return nil
	}
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || rest == "" {
		return fmt.Errorf("not an origin: want scheme://host[:port], like https://app.example.com")
	}
	for i := 0; i < len(scheme); i++ {
		if b := scheme[i]; !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || i > 0 && ('0' <= b && b <= '9' || b == '+' || b == '-' || b == '.')) {
			return fmt.Errorf("not an origin: the scheme %q is not one", scheme)
		}
	}
	if strings.Contains(rest, "*") {
		return fmt.Errorf("wildcards are not origins: use Access-Control-Allow-Origin-Regex")
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return fmt.Errorf("an origin has no path, query or fragment: write %s://%s", scheme, rest[:i])
	}
	for i := 0; i < len(rest); i++ {
		if b := rest[i]; !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte(".-_:[]%", b) >= 0) {
			return fmt.Errorf("not an origin: %q cannot be in a host", b)
		}
	}
	return nil
}

// corsList reads a comma list of tokens (methods or header names) into
// the header value vkp sends: items trimmed, joined with ", ". "*" alone
// is nil when echo is set (the preflight's request is echoed, which works
// with credentials too), else "*".
func (c *compiler) corsList(r *Route, key, v, what string, echo bool) []byte {
	var items []string
	for _, it := range strings.Split(v, ",") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		switch {
		case it == "*":
			if len(items) > 1 {
				c.errorf(r.metaPath(key), "%q: \"*\" stands alone", v)
				return nil
			}
			if echo {
				return nil
			}
			return corsStar
		case !isToken(it):
			c.errorf(r.metaPath(key), "%q is not a %s (a token: no spaces, colons or quotes)", it, what)
			return nil
		}
		if what == "method" {
			it = normalizeMethod(it)
		}
		out = append(out, it)
	}
	if len(out) == 0 {
		c.errorf(r.metaPath(key), "empty: want a comma-separated list, or \"*\"")
		return nil
	}
	return []byte(strings.Join(out, ", "))
}

// normalizeMethod upper-cases the methods browsers upper-case in requests
// (Fetch: DELETE, GET, HEAD, OPTIONS, POST, PUT); a browser compares the
// others as written.
func normalizeMethod(m string) string {
	for _, s := range []string{"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"} {
		if strings.EqualFold(m, s) {
			return s
		}
	}
	return m
}
