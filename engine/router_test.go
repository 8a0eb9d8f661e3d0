package engine

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func reqCtx(method, host, uri string, hdr ...string) *fasthttp.RequestCtx {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetHost(host)
	for i := 0; i+1 < len(hdr); i += 2 {
		ctx.Request.Header.Set(hdr[i], hdr[i+1])
	}
	return ctx
}

const precedenceConfig = `{"ReverseProxy": {
  "Routes": {
    "exact-host":      {"ClusterId": "c", "Order": 5, "Match": {"Hosts": ["api.com"], "Paths": ["*"]}},
    "exact-host-path": {"ClusterId": "c", "Order": 9, "Match": {"Hosts": ["api.com"], "Paths": ["/special"]}},
    "exact-port":      {"ClusterId": "c", "Order": 9, "Match": {"Hosts": ["api.com:8443"], "Paths": ["*"]}},
    "suffix-long":     {"ClusterId": "c", "Match": {"Hosts": ["*.api.com"], "Paths": ["*"]}},
    "suffix-short":    {"ClusterId": "c", "Order": -10, "Match": {"Hosts": ["*.com"], "Paths": ["*"]}},
    "any-order0-pfx":  {"ClusterId": "c", "Order": 0, "Match": {"Hosts": ["*"], "Paths": ["/a*"]}},
    "any-order0-long": {"ClusterId": "c", "Order": 0, "Match": {"Hosts": ["*"], "Paths": ["/a/b*"]}},
    "any-order0-ex":   {"ClusterId": "c", "Order": 0, "Match": {"Hosts": ["*"], "Paths": ["/a/b/c"]}},
    "any-order1-ex":   {"ClusterId": "c", "Order": 1, "Match": {"Hosts": ["*"], "Paths": ["/z"]}},
    "any-order0-star": {"ClusterId": "c", "Order": 0, "Match": {"Hosts": ["*"], "Paths": ["*"], "Methods": ["POST"]}},
    "any-order2-star": {"ClusterId": "c", "Order": 2, "Match": {"Hosts": ["*"], "Paths": ["*"]}},
    "tie-b":           {"ClusterId": "c", "Match": {"Hosts": ["tie.org"], "Paths": ["*"]}},
    "tie-a":           {"ClusterId": "c", "Match": {"Hosts": ["tie.org"], "Paths": ["*"]}},
    "methods-only":    {"ClusterId": "c", "Match": {"Hosts": ["m.net"], "Paths": ["*"], "Methods": ["DELETE"]}},
    "ab-test":         {"ClusterId": "c", "Order": 0, "Match": {"Hosts": ["ab.io"], "Paths": ["*"], "Statement": "Header('x-env') = 'test'"}},
    "ab-default":      {"ClusterId": "c", "Order": 1, "Match": {"Hosts": ["ab.io"], "Paths": ["*"]}}
  },
  "Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`

func TestRoutePrecedence(t *testing.T) {
	e := mustEngine(t, precedenceConfig, Options{})
	rt := e.Current().Router
	tests := []struct {
		name, method, host, uri string
		hdr                     []string
		want                    string // "" = no route
	}{
		{"exact host beats lower-order suffix", "GET", "api.com", "/x", nil, "exact-host"},
		{"exact path beats lower order inside a host", "GET", "api.com", "/special", nil, "exact-host"},
		{"host without port matches any port", "GET", "api.com:9999", "/x", nil, "exact-host"},
		{"host with port is more specific", "GET", "api.com:8443", "/x", nil, "exact-port"},
		{"host case-insensitive", "GET", "API.Com", "/x", nil, "exact-host"},
		{"longer suffix first", "GET", "v1.api.com", "/x", nil, "suffix-long"},
		{"shorter suffix", "GET", "shop.com", "/x", nil, "suffix-short"},
		{"suffix needs the dot", "GET", "com", "/a", nil, "any-order0-pfx"},
		{"exact path beats prefixes", "GET", "other.net", "/a/b/c", nil, "any-order0-ex"},
		{"longer prefix beats shorter", "GET", "other.net", "/a/b/x", nil, "any-order0-long"},
		{"prefix is not segment aware", "GET", "other.net", "/apple", nil, "any-order0-pfx"},
		{"path case-insensitive", "GET", "other.net", "/A/B/C", nil, "any-order0-ex"},
		{"order beats path specificity", "GET", "other.net", "/z", nil, "any-order1-ex"},
		{"methods reject falls through to order 2", "GET", "other.net", "/q", nil, "any-order2-star"},
		{"order 0 catch-all for POST", "POST", "other.net", "/q", nil, "any-order0-star"},
		{"order 0 exact wins before method-limited star", "POST", "other.net", "/a/b/c", nil, "any-order0-ex"},
		{"tie broken by route id", "GET", "tie.org", "/", nil, "tie-a"},
		{"methods mismatch falls through to wildcard host", "GET", "m.net", "/q", nil, "any-order2-star"},
		{"methods match", "DELETE", "m.net", "/q", nil, "methods-only"},
		{"methods case-insensitive", "delete", "m.net", "/q", nil, "methods-only"},
		{"statement true", "GET", "ab.io", "/", []string{"x-env", "test"}, "ab-test"},
		{"statement case-insensitive value", "GET", "ab.io", "/", []string{"X-Env", "TEST"}, "ab-test"},
		{"statement false falls through", "GET", "ab.io", "/", []string{"x-env", "prod"}, "ab-default"},
		{"statement header absent", "GET", "ab.io", "/", nil, "ab-default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rt.Match(reqCtx(tt.method, tt.host, tt.uri, tt.hdr...))
			got := ""
			if r != nil {
				got = r.ID
			}
			if got != tt.want {
				t.Fatalf("%s %s%s → %q, want %q", tt.method, tt.host, tt.uri, got, tt.want)
			}
		})
	}
}

func TestRouteNoMatch(t *testing.T) {
	e := mustEngine(t, `{"ReverseProxy": {
	  "Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["api.com"], "Paths": ["/v1*"], "Methods": ["GET"]}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`, Options{})
	rt := e.Current().Router
	for _, c := range []struct{ m, h, u string }{
		{"GET", "other.com", "/v1"}, {"GET", "api.com", "/v2"}, {"POST", "api.com", "/v1"}, {"GET", "", "/v1"},
	} {
		if r := rt.Match(reqCtx(c.m, c.h, c.u)); r != nil {
			t.Errorf("%s %s%s matched %q, want none", c.m, c.h, c.u, r.ID)
		}
	}
	if r := rt.Match(reqCtx("GET", "api.com", "/v1/x?y=1")); r == nil || r.ID != "r" {
		t.Fatalf("prefix with query: %v", r)
	}
}

func TestSeedABConfigRoutes(t *testing.T) {
	cfg, err := LoadConfig("../configs/seed-ab.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEngine(e)
	rt := e.Current().Router
	if r := rt.Match(reqCtx("GET", "api.com", "/x", "x-env", "test")); r == nil || r.cluster.ID != "ClusterA" {
		t.Fatalf("x-env: test → %v, want ClusterA", r)
	}
	if r := rt.Match(reqCtx("GET", "api.com", "/x")); r == nil || r.cluster.ID != "ClusterB" {
		t.Fatalf("no x-env → %v, want ClusterB", r)
	}
}

func TestBadStatementFailsConfig(t *testing.T) {
	_, err := ParseConfig([]byte(`{"ReverseProxy": {
	  "Routes": {"a": {"ClusterId": "c", "Match": {"Statement": "Header('x') = "}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`))
	if err == nil {
		t.Fatal("a route with a broken statement loaded")
	}
	if want := "ReverseProxy.Routes.a.Match.Statement: 1:"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q lacks %q", err, want)
	}
}

// A localhost pattern also matches the loopback addresses, as in VKProxy.
func TestLocalhostMatchesLoopback(t *testing.T) {
	rt := mustEngine(t, `{"ReverseProxy": {"Routes": {
	    "l": {"ClusterId": "c", "Match": {"Hosts": ["localhost:5000"]}},
	    "any": {"ClusterId": "c", "Order": 9, "Match": {"Hosts": ["*"]}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "a:1"}]}}}}`, Options{}).Current().Router
	for host, want := range map[string]string{
		"localhost:5000": "l", "127.0.0.1:5000": "l", "[::1]:5000": "l", "LOCALHOST:5000": "l",
		"127.0.0.1:5001": "any", "[::1]:80": "any", "example.com:5000": "any",
	} {
		if r := rt.Match(reqCtx("GET", host, "/")); r == nil || r.ID != want {
			t.Errorf("Host %s → %v, want route %s", host, r, want)
		}
	}
}
