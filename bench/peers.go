package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/goccy/go-json"
)

// Topology is what a generated proxy config points at.
type Topology struct {
	Listen  string // 127.0.0.1:port the proxy listens on
	Origin  string // main origin host:port
	Shadow  string // shadow origin host:port; "" when the scenario does not mirror
	Cache   bool   // cache responses (origin sends Cache-Control)
	Workers int    // worker processes/threads for nginx and HAProxy
	Dir     string // nginx prefix: temp, cache and log paths live here
	Log     string // access log: "" off, "on", "sampled" (1 in 100)
	Answer  int    // the scenario's answer body bytes (the floor serves them itself)
}

// Every peer gets the same shape: one upstream with keep-alive connections,
// a 2-core worker count, request bodies up to 64 MiB, no access logs
// unless the scenario has one (then written to a file in the run's
// directory: nginx's access_log, vkp's stderr).

// vkpConfig returns the vkp (VKProxy JSON) config for t.
func vkpConfig(t Topology) ([]byte, error) {
	type dest struct {
		Address string `json:"Address"`
	}
	type cluster struct {
		LoadBalancingPolicy string `json:"LoadBalancingPolicy,omitempty"`
		Destinations        []dest `json:"Destinations"`
	}
	meta := map[string]string{}
	if t.Shadow != "" {
		meta["MirrorCluster"] = "shadow"
	}
	if t.Cache {
		meta["Cache"] = "Memory"
	}
	route := map[string]any{
		"Order":     0,
		"ClusterId": "main",
		"Match":     map[string]any{"Hosts": []string{"*"}, "Paths": []string{"*"}},
	}
	if len(meta) > 0 {
		route["Metadata"] = meta
	}
	clusters := map[string]cluster{
		"main": {LoadBalancingPolicy: "RoundRobin", Destinations: []dest{{"http://" + t.Origin}}},
	}
	if t.Shadow != "" {
		clusters["shadow"] = cluster{Destinations: []dest{{"http://" + t.Shadow}}}
	}
	cfg := map[string]any{
		"Listen": map[string]any{"http": map[string]any{"Address": []string{t.Listen}}},
		"RandomProbabilisticSampler": map[string]any{"Rules": []map[string]any{
			{"CategoryName": "Vkp.Access", "Probability": 0.01},
		}},
		"ReverseProxy": map[string]any{
			"Routes":   map[string]any{"bench": route},
			"Clusters": clusters,
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// nginxConfig returns an nginx.conf for t, to be run as
// `nginx -p DIR -c DIR/nginx.conf -e stderr -g 'daemon off;'`.
// Mirroring uses the mirror module with mirror_request_body on; caching
// uses proxy_cache in DIR/cache. Request bodies are buffered in memory up
// to 2 MiB (client_body_buffer_size) so the 1 MiB scenarios measure the
// proxy, not the disk, as vkp buffers bodies in memory too.
func nginxConfig(t Topology) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	dir := t.Dir
	if os.Geteuid() == 0 {
		// As root the workers would switch to nobody, who cannot write the
		// temp and cache directories of this run.
		p("user root;")
	}
	p("worker_processes %d;", t.Workers)
	p("pid %s;", filepath.Join(dir, "nginx.pid"))
	p("error_log stderr warn;")
	p("events { worker_connections 4096; }")
	p("http {")
	switch t.Log {
	case "on":
		p("  access_log %s;", filepath.Join(dir, "access.log"))
	case "sampled":
		p("  split_clients $request_id $bench_log { 1%% 1; * 0; }")
		p("  access_log %s combined if=$bench_log;", filepath.Join(dir, "access.log"))
	default:
		p("  access_log off;")
	}
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		p("  %s_temp_path %s;", d, filepath.Join(dir, d+"_temp"))
	}
	p("  keepalive_requests 1000000;")
	p("  keepalive_timeout 65s;")
	p("  client_max_body_size 64m;")
	p("  client_body_buffer_size 2m;")
	p("  proxy_http_version 1.1;")
	p("  proxy_set_header Connection \"\";")
	p("  proxy_buffering on;")
	if t.Cache {
		p("  proxy_cache_path %s levels=1:2 keys_zone=bench:10m max_size=256m inactive=60s use_temp_path=off;",
			filepath.Join(dir, "cache"))
		// A hit opens, stats and closes its cache file unless the
		// descriptor is kept: nginx's usual tuning for a cache, worth 1.7x
		// its hit rate here (BENCHMARKS.md), so the comparison is with it.
		p("  open_file_cache max=1000 inactive=60s;")
	}
	p("  upstream main { server %s; keepalive 64; keepalive_requests 1000000; }", t.Origin)
	if t.Shadow != "" {
		p("  upstream shadow { server %s; keepalive 64; keepalive_requests 1000000; }", t.Shadow)
	}
	p("  server {")
	p("    listen %s;", t.Listen)
	p("    location / {")
	p("      proxy_pass http://main;")
	if t.Shadow != "" {
		p("      mirror /__mirror;")
		p("      mirror_request_body on;")
	}
	if t.Cache {
		p("      proxy_cache bench;")
		p("      add_header X-Cache-Status $upstream_cache_status;")
	}
	p("    }")
	if t.Shadow != "" {
		p("    location = /__mirror {")
		p("      internal;")
		p("      proxy_pass http://shadow$request_uri;")
		p("    }")
	}
	p("  }")
	p("}")
	return b.String()
}

// haproxyConfig returns a haproxy.cfg for t, to be run as `haproxy -f cfg -db`.
// HAProxy has no request mirroring (without SPOE); caching uses its
// in-memory cache (a `cache` section, cache-use on requests, cache-store on
// responses), which follows the origin's Cache-Control.
func haproxyConfig(t Topology) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("global")
	p("  nbthread %d", t.Workers)
	p("  maxconn 4096") // within a default 20k file limit; far above the 256 connections used
	p("defaults")
	p("  mode http")
	p("  option http-keep-alive")
	p("  http-reuse always")
	p("  timeout connect 5s")
	p("  timeout client 60s")
	p("  timeout server 60s")
	p("  timeout http-keep-alive 60s")
	if t.Cache {
		p("cache bench")
		p("  total-max-size 64") // MiB
		p("  max-object-size 1048576")
		p("  max-age 60")
	}
	p("frontend bench")
	p("  bind %s", t.Listen)
	p("  default_backend main")
	p("backend main")
	if t.Cache {
		p("  http-request cache-use bench")
		p("  http-response cache-store bench")
	}
	p("  server origin %s maxconn 1000", t.Origin)
	return b.String()
}

// traefikDynamic returns Traefik's file-provider (dynamic) config for t.
// Mirroring uses a mirroring service with the whole body mirrored and no
// body size limit (Traefik's defaults, written out); Traefik has no cache.
func traefikDynamic(t Topology) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	service := "main"
	if t.Shadow != "" {
		service = "mirrored"
	}
	p("http:")
	p("  routers:")
	p("    bench:")
	p("      entryPoints: [web]")
	p("      rule: \"PathPrefix(`/`)\"")
	p("      service: %s", service)
	p("  services:")
	p("    main:")
	p("      loadBalancer:")
	p("        servers: [{url: \"http://%s\"}]", t.Origin)
	if t.Shadow != "" {
		p("    shadow:")
		p("      loadBalancer:")
		p("        servers: [{url: \"http://%s\"}]", t.Shadow)
		p("    mirrored:")
		p("      mirroring:")
		p("        service: main")
		p("        mirrorBody: true")
		p("        maxBodySize: -1")
		p("        mirrors: [{name: shadow, percent: 100}]")
	}
	return b.String()
}

// traefikArgs is Traefik's static config as flags: one entry point on
// t.Listen, the dynamic config from path, no access log, no phoning home.
func traefikArgs(bin, path string, t Topology) []string {
	return []string{bin,
		"--entryPoints.web.address=" + t.Listen,
		"--providers.file.filename=" + path,
		"--providers.file.watch=false",
		"--log.level=ERROR",
		"--global.checkNewVersion=false",
		"--global.sendAnonymousUsage=false",
	}
}

// Proxy is one contender: vkp or a peer.
type Proxy struct {
	Name string
	Bin  string
	// Supports says why a scenario cannot run on this proxy ("" if it can).
	Supports func(s Scenario) string
	// Write writes the config for t into dir and returns the argv to start it.
	Write func(dir string, t Topology) ([]string, error)
	// Env returns extra environment variables for a run with the given
	// worker count (vkp: GOMAXPROCS, its only worker knob).
	Env func(workers int) []string
	// LogFile, when set, names the file the proxy's stderr goes to.
	LogFile func(dir string) string
}

func vkpProxy(bin string) Proxy {
	return Proxy{
		Name:     "vkp",
		Bin:      bin,
		Supports: func(Scenario) string { return "" },
		Write: func(dir string, t Topology) ([]string, error) {
			cfg, err := vkpConfig(t)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(dir, "vkp.json")
			if err := os.WriteFile(path, cfg, 0o644); err != nil {
				return nil, err
			}
			argv := []string{bin, "serve", "--config", path}
			switch t.Log {
			case "on":
				argv = append(argv, "--access-log")
			case "sampled":
				argv = append(argv, "--access-log", "--sampler", "random")
			default:
				argv = append(argv, "--access-log=false")
			}
			return argv, nil
		},
		// The log goes to a file, as nginx's access_log does, not through
		// a pipe this harness would have to drain.
		LogFile: func(dir string) string { return filepath.Join(dir, "vkp.log") },
		Env:     goEnv,
	}
}

// goEnv is the worker knob of a Go proxy (vkp, Traefik): GOMAXPROCS.
func goEnv(workers int) []string { return []string{"GOMAXPROCS=" + strconv.Itoa(workers)} }

func nginxProxy(bin string) Proxy {
	return Proxy{
		Name:     "nginx",
		Bin:      bin,
		Supports: func(Scenario) string { return "" },
		Write: func(dir string, t Topology) ([]string, error) {
			t.Dir = dir
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, []byte(nginxConfig(t)), 0o644); err != nil {
				return nil, err
			}
			return nginxArgs(bin, dir, path, "-g", "daemon off;"), nil
		},
	}
}

// nginxArgs is the nginx command line for prefix dir and config path.
// -e stderr keeps nginx from opening its compiled-in error log before it
// reads the config.
func nginxArgs(bin, dir, path string, extra ...string) []string {
	return append([]string{bin, "-p", dir + "/", "-c", path, "-e", "stderr"}, extra...)
}

func haproxyProxy(bin string) Proxy {
	return Proxy{
		Name: "haproxy",
		Bin:  bin,
		Supports: func(s Scenario) string {
			switch {
			case s.Mirror:
				return "n/a (no mirroring)"
			case s.Log != "":
				return "n/a (logs only to syslog)"
			}
			return ""
		},
		Write: func(dir string, t Topology) ([]string, error) {
			path := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(path, []byte(haproxyConfig(t)), 0o644); err != nil {
				return nil, err
			}
			return []string{bin, "-f", path, "-db"}, nil
		},
	}
}

// floorProxy is the floor (bench floor, floor_linux.go): this binary
// answering every request with a constant cache hit from bare epoll loops,
// one per worker. It runs cache hits only, where it is the least any server
// can spend per answer on the machine.
func floorProxy(self string) Proxy {
	return Proxy{
		Name: "floor",
		Bin:  self,
		Supports: func(s Scenario) string {
			if !s.Cache || s.Method != "GET" || s.BodySize > 0 || s.Stream || s.Mirror || s.Log != "" {
				return "n/a (floor: cache hits only)"
			}
			return ""
		},
		Write: func(dir string, t Topology) ([]string, error) {
			return []string{self, "floor", "--listen", t.Listen, "--size", strconv.Itoa(t.Answer),
				"--workers", strconv.Itoa(max(t.Workers, 1))}, nil
		},
		Env: goEnv,
	}
}

// traefikProxy runs Traefik v3 (a Go binary on PATH; Debian has no
// package: bench/README.md says how to build one). It is a Go program like
// vkp, so its worker knob is GOMAXPROCS too.
func traefikProxy(bin string) Proxy {
	return Proxy{
		Name: "traefik",
		Bin:  bin,
		Supports: func(s Scenario) string {
			switch {
			case s.Cache:
				return "n/a (no cache)"
			case s.Log != "":
				return "n/a (access log not set up here)"
			}
			return ""
		},
		Write: func(dir string, t Topology) ([]string, error) {
			path := filepath.Join(dir, "dynamic.yml")
			if err := os.WriteFile(path, []byte(traefikDynamic(t)), 0o644); err != nil {
				return nil, err
			}
			return traefikArgs(bin, path, t), nil
		},
		Env: goEnv,
	}
}
