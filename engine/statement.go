package engine

import (
	"errors"

	"github.com/valyala/fasthttp"
)

// compileStatement compiles a route's Match.Statement. A statement that does
// not compile fails the config: it must never silently match everything.
func compileStatement(rc *RouteConfig) (func(*fasthttp.RequestCtx) bool, error) {
	if rc.Statement == "" {
		return nil, nil
	}
	return nil, errors.New("ReverseProxy.Routes." + rc.ID + ".Match.Statement: not supported yet")
}
