package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-json"
)

func topo(mirror, cache bool) Topology {
	t := Topology{Listen: "127.0.0.1:18080", Origin: "127.0.0.1:19001", Cache: cache, Workers: 2, Dir: "/tmp/x"}
	if mirror {
		t.Shadow = "127.0.0.1:19002"
	}
	return t
}

func TestVKPConfig(t *testing.T) {
	tests := []struct {
		name          string
		mirror, cache bool
	}{
		{"plain", false, false},
		{"mirror", true, false},
		{"cache", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := vkpConfig(topo(tt.mirror, tt.cache))
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Listen       struct{ HTTP struct{ Address []string } }
				ReverseProxy struct {
					Routes map[string]struct {
						ClusterId string
						Match     struct{ Hosts, Paths []string }
						Metadata  map[string]string
					}
					Clusters map[string]struct {
						Destinations []struct{ Address string }
					}
				}
			}
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			if got := cfg.Listen.HTTP.Address; len(got) != 1 || got[0] != "127.0.0.1:18080" {
				t.Errorf("Listen.http.Address = %v", got)
			}
			r, ok := cfg.ReverseProxy.Routes["bench"]
			if !ok || r.ClusterId != "main" || r.Match.Hosts[0] != "*" || r.Match.Paths[0] != "*" {
				t.Fatalf("route = %+v", cfg.ReverseProxy.Routes)
			}
			dest := func(c string) string {
				d := cfg.ReverseProxy.Clusters[c].Destinations
				if len(d) != 1 {
					return ""
				}
				return d[0].Address
			}
			if got := dest("main"); got != "http://127.0.0.1:19001" {
				t.Errorf("main destination = %q", got)
			}
			if got, want := r.Metadata["MirrorCluster"] == "shadow", tt.mirror; got != want {
				t.Errorf("MirrorCluster set = %v, want %v", got, want)
			}
			if tt.mirror && dest("shadow") != "http://127.0.0.1:19002" {
				t.Errorf("shadow destination = %q", dest("shadow"))
			}
			if got, want := r.Metadata["Cache"] == "Memory", tt.cache; got != want {
				t.Errorf("Cache=Memory set = %v, want %v", got, want)
			}
		})
	}
}

func TestNginxConfig(t *testing.T) {
	tests := []struct {
		name          string
		mirror, cache bool
		want, not     []string
	}{
		{"plain", false, false,
			[]string{"worker_processes 2;", "listen 127.0.0.1:18080;", "upstream main { server 127.0.0.1:19001; keepalive 64;",
				"proxy_pass http://main;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`, "access_log off;"},
			[]string{"mirror", "proxy_cache", "daemon"}},
		{"mirror", true, false,
			[]string{"upstream shadow { server 127.0.0.1:19002; keepalive 64;", "mirror /__mirror;", "mirror_request_body on;",
				"location = /__mirror {", "internal;", "proxy_pass http://shadow$request_uri;"},
			[]string{"proxy_cache"}},
		{"cache", false, true,
			[]string{"proxy_cache_path /tmp/x/cache ", "keys_zone=bench:", "proxy_cache bench;", "open_file_cache max="},
			[]string{"mirror"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkConf(t, nginxConfig(topo(tt.mirror, tt.cache)), tt.want, tt.not)
		})
	}
}

// TestNginxConfigValid runs `nginx -t` on each generated config when nginx
// is installed.
func TestNginxConfigValid(t *testing.T) {
	bin := lookTool("nginx")
	if bin == "" {
		t.Skip("nginx not installed")
	}
	for _, tc := range []struct{ mirror, cache bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		dir := t.TempDir()
		tp := topo(tc.mirror, tc.cache)
		tp.Dir = dir
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(nginxConfig(tp)), 0o644); err != nil {
			t.Fatal(err)
		}
		argv := nginxArgs(bin, dir, path, "-t", "-q")
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("mirror=%v cache=%v: nginx -t: %v\n%s", tc.mirror, tc.cache, err, out)
		}
	}
}

func TestHAProxyConfig(t *testing.T) {
	plain := haproxyConfig(topo(false, false))
	// No "daemon": haproxy must run in the foreground (-db).
	checkConf(t, plain, []string{"nbthread 2", "mode http", "bind 127.0.0.1:18080", "server origin 127.0.0.1:19001", "http-reuse always"},
		[]string{"daemon", "cache"})
	cached := haproxyConfig(topo(false, true))
	checkConf(t, cached, []string{"cache bench\n", "max-object-size 1048576", "http-request cache-use bench", "http-response cache-store bench"}, nil)
	bin := lookTool("haproxy")
	if bin == "" {
		return
	}
	for _, conf := range []string{plain, cached} {
		path := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s\n%s", err, out, conf)
		}
	}
}

func TestTraefikConfig(t *testing.T) {
	tests := []struct {
		name      string
		mirror    bool
		want, not []string
	}{
		{"plain", false,
			[]string{"entryPoints: [web]", "service: main\n", `servers: [{url: "http://127.0.0.1:19001"}]`},
			[]string{"mirror", "shadow"}},
		{"mirror", true,
			[]string{"service: mirrored\n", "    mirrored:\n      mirroring:\n        service: main\n",
				"mirrorBody: true", "maxBodySize: -1", "mirrors: [{name: shadow, percent: 100}]",
				`servers: [{url: "http://127.0.0.1:19002"}]`},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkConf(t, traefikDynamic(topo(tt.mirror, false)), tt.want, tt.not)
		})
	}
	argv := traefikArgs("traefik", "/tmp/x/dynamic.yml", topo(false, false))
	for _, w := range []string{"--entryPoints.web.address=127.0.0.1:18080", "--providers.file.filename=/tmp/x/dynamic.yml"} {
		if !slices.Contains(argv, w) {
			t.Errorf("traefik argv %q lacks %q", argv, w)
		}
	}
}

func TestPeerSupport(t *testing.T) {
	hp := haproxyProxy("haproxy")
	for _, s := range scenarioTable {
		why := hp.Supports(s)
		if (why != "") != (s.Mirror || s.Log != "") {
			t.Errorf("haproxy %s: %q", s.Name, why)
		}
		if why := traefikProxy("traefik").Supports(s); (why != "") != (s.Cache || s.Log != "") {
			t.Errorf("traefik %s: %q", s.Name, why)
		}
		if nginxProxy("nginx").Supports(s) != "" || vkpProxy("vkp").Supports(s) != "" {
			t.Errorf("%s must run on nginx and vkp", s.Name)
		}
	}
}

// checkConf fails t for each of want missing from conf and each of not in it.
func checkConf(t *testing.T, conf string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(conf, w) {
			t.Errorf("missing %q in\n%s", w, conf)
		}
	}
	for _, n := range not {
		if strings.Contains(conf, n) {
			t.Errorf("unexpected %q in\n%s", n, conf)
		}
	}
}

func lookTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// The access-log scenarios: nginx writes every line or 1 in 100 to a file
// (nginx -t accepts both when nginx is installed); vkp gets the matching
// flags and its sampler rule.
func TestAccessLogConfigs(t *testing.T) {
	on, sampled := topo(false, false), topo(false, false)
	on.Log, sampled.Log = "on", "sampled"
	checkConf(t, nginxConfig(on), []string{"access_log /tmp/x/access.log;"}, []string{"access_log off;", "split_clients"})
	checkConf(t, nginxConfig(sampled), []string{"split_clients $request_id $bench_log { 1% 1; * 0; }",
		"access_log /tmp/x/access.log combined if=$bench_log;"}, []string{"access_log off;"})
	for _, tc := range []struct {
		log  string
		want []string
	}{
		{"", []string{"--access-log=false"}},
		{"on", []string{"--access-log"}},
		{"sampled", []string{"--access-log", "--sampler", "random"}},
	} {
		dir := t.TempDir()
		tp := topo(false, false)
		tp.Log = tc.log
		argv, err := vkpProxy("/bin/vkp").Write(dir, tp)
		if err != nil {
			t.Fatal(err)
		}
		if got := argv[4:]; !slices.Equal(got, tc.want) {
			t.Errorf("log %q: vkp flags %q, want %q", tc.log, got, tc.want)
		}
	}
	cfg, err := vkpConfig(sampled)
	if err != nil {
		t.Fatal(err)
	}
	checkConf(t, string(cfg), []string{`"CategoryName": "Vkp.Access"`, `"Probability": 0.01`}, nil)
	if bin := lookTool("nginx"); bin != "" {
		for _, tp := range []Topology{on, sampled} {
			dir := t.TempDir()
			tp.Dir = dir
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, []byte(nginxConfig(tp)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, nginxArgs(bin, dir, path, "-t", "-q")[1:]...).CombinedOutput(); err != nil {
				t.Errorf("nginx -t (log %s): %v\n%s", tp.Log, err, out)
			}
		}
	}
}
