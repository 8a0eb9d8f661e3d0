package engine

import (
	"fmt"

	"github.com/vkp-proxy/vkp/engine/expr"
)

// compileStatement compiles a route's Match.Statement (nil when it has
// none). A statement that does not compile fails the config: it must never
// silently match everything (VKProxy logs the error and then matches every
// request).
func compileStatement(rc *RouteConfig) (*expr.Predicate, error) {
	if rc.Statement == "" {
		return nil, nil
	}
	p, err := expr.Compile(rc.Statement)
	if err != nil {
		return nil, fmt.Errorf("ReverseProxy.Routes.%s.Match.Statement: %w", rc.ID, err)
	}
	return p, nil
}
