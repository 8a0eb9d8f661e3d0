package engine

import (
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/engine/expr"
)

// compileStatement compiles a route's Match.Statement. A statement that does
// not compile fails the config: it must never silently match everything
// (VKProxy logs the error and then matches every request).
func compileStatement(rc *RouteConfig) (func(*fasthttp.RequestCtx) bool, error) {
	if rc.Statement == "" {
		return nil, nil
	}
	p, err := expr.Compile(rc.Statement)
	if err != nil {
		return nil, fmt.Errorf("ReverseProxy.Routes.%s.Match.Statement: %w", rc.ID, err)
	}
	return p.Eval, nil
}
