package engine

import (
	"strings"
)

// A route's handler is a chain of stages, composed once per snapshot,
// ending in forward. A stage is one route feature: it owns route Metadata
// keys and builds its handler around the next one, or returns next itself
// when the route does not use it, so an unconfigured feature costs nothing
// on the request path.
//
// Adding a route feature is one file with a stage value and one line in
// stages below:
//
//	// cors.go
//	var corsStage = stage{
//		name:  "cors",
//		keys:  []string{"Access-Control-Allow-Origin", ...},
//		build: buildCORS, // func(c *compiler, r *Route, next handler) handler
//	}
//
// build reads the route's settings, reports each problem with c.errorf
// (JSON path and position) and returns the handler.
type stage struct {
	name  string
	keys  []string // route Metadata keys the stage owns (case-insensitive)
	build func(c *compiler, r *Route, next handler) handler
}

// handler is one stage of a route, or the whole composed chain.
type handler func(x *exchange)

// stages, outermost first. The order, and why:
//
//  1. CORS (cors.go): a preflight is answered by vkp and never reaches a
//     cache, a shadow or the origin; the CORS fields of other answers are
//     set after the inner stages, so cache hits get them too, and the
//     cache stores the origin's answer without them.
//  2. cache: a hit is answered from the store and is not mirrored:
//     the shadow sees the traffic the origin sees, so the two can be
//     compared (VKProxy mirrors hits and preflights too).
//  3. mirror: copies what is forwarded, after the main response.
//  4. forward (the end of every chain).
var stages = []stage{
	corsStage,
	cacheStage,
	mirrorStage,
}

// ownedKey reports whether some stage owns a route Metadata key.
func ownedKey(k string) bool {
	for _, s := range stages {
		for _, o := range s.keys {
			if strings.EqualFold(k, o) {
				return true
			}
		}
	}
	return false
}

// vkproxyRouteKeys are route Metadata keys of VKProxy features. One that
// no stage owns loads with a "not implemented" warning, so a moved config
// says what it loses; other keys are the user's own and pass silently.
var vkproxyRouteKeys = []string{
	"Cache", "CacheKey", "CacheWhen", "CacheMaximumBodySize", "ForceCache", "CacheTime",
	"Access-Control-Allow-Origin", "Access-Control-Allow-Origin-Regex", "Access-Control-Allow-Headers",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Credentials", "Access-Control-Max-Age",
	"Access-Control-Expose-Headers",
	"ResponseCompression", "ResponseCompressionMimeTypes", "ResponseCompressionExcludedMimeTypes",
	"ResponseCompressionEnableForHttps", "ResponseCompressionLevel",
	"OnlyHttps", "JwtSigningKey", "JwtIssuer", "JwtAudience", "JwtHeader", "JwtHeaderPrefix", "JwtLifetime",
	"JwtExceptionDetail", "Prometheus",
	"socks5", "socks5User", "socks5Password", "DisableNoAuth", "socks5ToWS", "WSToSocks5",
}

// vkproxyFeatureKey reports whether k names a VKProxy route feature:
// listed above, a WAF rule (waf_*), or static content (*_Content and its
// *_ContentType, *_ContentWhen).
func vkproxyFeatureKey(k string) bool {
	for _, v := range vkproxyRouteKeys {
		if strings.EqualFold(k, v) {
			return true
		}
	}
	return len(k) > 4 && strings.EqualFold(k[:4], "waf_") ||
		strings.HasSuffix(k, "_Content") || strings.HasSuffix(k, "_ContentType") || strings.HasSuffix(k, "_ContentWhen")
}

// buildChain composes a route's stages around forward.
func (c *compiler) buildChain(r *Route, forward handler) handler {
	h := forward
	for i := len(stages) - 1; i >= 0; i-- {
		h = stages[i].build(c, r, h)
	}
	for _, k := range r.cfg.metaKeys {
		if !ownedKey(k) && vkproxyFeatureKey(k) {
			c.warnf(r.metaPath(k), "not implemented yet, ignored")
		}
	}
	return h
}
