package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vkp-proxy/vkp/store"
)

func TestSampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../configs/*.json")
	if err != nil || len(files) < 3 {
		t.Fatalf("expected the sample configs in ../configs, got %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := LoadConfig(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Routes) == 0 || len(cfg.Clusters) == 0 {
				t.Fatalf("%s: %d routes, %d clusters", f, len(cfg.Routes), len(cfg.Clusters))
			}
			// Stores as serve opens them: a disk directory, and a Redis
			// that is not there (the store connects in the background).
			dir := t.TempDir()
			e, err := New(cfg, Options{CacheStores: map[string]func() (store.Store, error){
				"disk": func() (store.Store, error) { return store.NewDisk(store.DiskOptions{Dir: dir}) },
				"redis": func() (store.Store, error) {
					return store.NewRedis(store.RedisOptions{Addr: deadAddr(t), Timeout: 50 * time.Millisecond})
				},
			}})
			if err != nil {
				t.Fatal(err)
			}
			closeEngine(e)
		})
	}
}

func TestSeedMirrorConfig(t *testing.T) {
	cfg, err := LoadConfig("../configs/seed-mirror.json")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clusters["apidemo"]
	if c == nil || c.LoadBalancingPolicy != "Hash" {
		t.Fatalf("apidemo cluster: %+v", c)
	}
	if by, _ := c.Metadata.Get("hashby"); by != "header" {
		t.Fatalf("HashBy = %q", by)
	}
	d, err := parseDestination(c.Destinations[0].Address)
	if err != nil || !d.tls || d.addr != "xxx.lt:443" {
		t.Fatalf("https destination parsed as %+v, %v", d, err)
	}
	m, err := parseDestination(cfg.Clusters["apidemomirror"].Destinations[0].Address)
	if err != nil || m.tls || m.addr != "xxx.org:80" || m.base != "" {
		t.Fatalf("mirror destination parsed as %+v, %v", m, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := mustConfig(t, `{"ReverseProxy": {
		"DefaultProxyTimeout": "00:01:00",
		"Routes": {"b": {"ClusterId": "C"}, "a": {"ClusterId": "c", "Timeout": "5s", "Order": "2",
		           "Match": {"Methods": ["get", "Post"]}}},
		"Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`)
	if len(cfg.Routes) != 2 || cfg.Routes[0].ID != "a" || cfg.Routes[1].ID != "b" {
		t.Fatalf("routes not sorted by id: %+v", cfg.Routes)
	}
	a, b := cfg.Routes[0], cfg.Routes[1]
	if a.Timeout != 5*time.Second || b.Timeout != time.Minute {
		t.Fatalf("timeouts %v %v", a.Timeout, b.Timeout)
	}
	if a.Order != 2 || strings.Join(a.Methods, ",") != "GET,POST" {
		t.Fatalf("order %d methods %v", a.Order, a.Methods)
	}
	if strings.Join(b.Hosts, ",") != "*" || strings.Join(b.Paths, ",") != "*" {
		t.Fatalf("default hosts/paths %v %v", b.Hosts, b.Paths)
	}
	if cfg.Clusters["c"].LoadBalancingPolicy != "Random" {
		t.Fatalf("default policy %q", cfg.Clusters["c"].LoadBalancingPolicy)
	}
}

func TestConfigErrors(t *testing.T) {
	const okCluster = `"Clusters": {"c": {"Destinations": [{"Address": "http://127.0.0.1:9000"}]}}`
	tests := []struct {
		name string
		src  string
		want []string // substrings of the problems, all required
	}{
		{"malformed json", "{\n  \"ReverseProxy\": {\n    \"Routes\": [}\n}", []string{"3:", "invalid JSON"}},
		{"truncated json", `{"ReverseProxy": {"Routes": {`, []string{"invalid JSON"}},
		{"empty", "  ", []string{"config is empty"}},
		{"not an object", `[1]`, []string{"expected the config to be a JSON object"}},
		{"missing cluster", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "nope"}}, ` + okCluster + `}}`,
			[]string{`ReverseProxy.Routes.r.ClusterId: cluster "nope" is not defined`}},
		{"no cluster id", `{"ReverseProxy": {"Routes": {"r": {}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.ClusterId: required"}},
		{"duplicate route ids", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}, "R": {"ClusterId": "c"}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.R: duplicate key"}},
		{"duplicate cluster ids", `{"ReverseProxy": {"Routes": {}, "Clusters": {"c": {"Destinations": [{"Address": "a:1"}]}, "c": {"Destinations": [{"Address": "a:1"}]}}}}`,
			[]string{"ReverseProxy.Clusters.c: duplicate key"}},
		{"bad duration", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Timeout": "30 seconds"}}, ` + okCluster + `}}`,
			[]string{`ReverseProxy.Routes.r.Timeout: "30 seconds": not a duration`}},
		{"bad timespan", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Timeout": "00:61:00"}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Timeout", "minutes and seconds 0-59"}},
		{"negative duration", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Timeout": "-00:00:01"}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Timeout", "negative"}},
		{"empty destinations", `{"ReverseProxy": {"Clusters": {"c": {"Destinations": []}}}}`,
			[]string{"ReverseProxy.Clusters.c.Destinations: at least one destination is required"}},
		{"missing destinations", `{"ReverseProxy": {"Clusters": {"c": {}}}}`,
			[]string{"ReverseProxy.Clusters.c.Destinations: at least one destination is required"}},
		{"bad address scheme", `{"ReverseProxy": {"Clusters": {"c": {"Destinations": [{"Address": "ftp://x:1"}]}}}}`,
			[]string{"ReverseProxy.Clusters.c.Destinations[0].Address", `scheme "ftp"`}},
		{"address without port", `{"ReverseProxy": {"Clusters": {"c": {"Destinations": [{"Address": "example.com"}]}}}}`,
			[]string{"ReverseProxy.Clusters.c.Destinations[0].Address"}},
		{"address bad port", `{"ReverseProxy": {"Clusters": {"c": {"Destinations": [{"Address": "http://a:99999"}]}}}}`,
			[]string{"Destinations[0].Address", "bad port"}},
		{"empty address", `{"ReverseProxy": {"Clusters": {"c": {"Destinations": [{"Host": "x"}]}}}}`,
			[]string{"Destinations[0].Address: empty address"}},
		{"unknown policy", `{"ReverseProxy": {"Clusters": {"c": {"LoadBalancingPolicy": "First", "Destinations": [{"Address": "a:1"}]}}}}`,
			[]string{"ReverseProxy.Clusters.c.LoadBalancingPolicy: unknown policy \"First\""}},
		{"typo key", `{"ReverseProxy": {"Clusters": {"c": {"Destination": [{"Address": "a:1"}]}}}}`,
			[]string{"ReverseProxy.Clusters.c.Destination: unknown key (did you mean \"Destinations\"?)"}},
		{"Enabled, as VKProxy's docs write it, switches the check on", `{"ReverseProxy": {"Clusters": {"c": {"HealthCheck": {"Active": {"Enabled": true, "Policy": "Http"}}, "Destinations": [{"Address": "a:1"}]}}}}`,
			[]string{"the Http policy needs a Path"}},
		{"health http without path", `{"ReverseProxy": {"Clusters": {"c": {"HealthCheck": {"Active": {"Enable": true, "Policy": "Http"}}, "Destinations": [{"Address": "a:1"}]}}}}`,
			[]string{"HealthCheck.Active.Path"}},
		{"health bad interval", `{"ReverseProxy": {"Clusters": {"c": {"HealthCheck": {"Active": {"Enable": true, "Interval": "soon"}}, "Destinations": [{"Address": "a:1"}]}}}}`,
			[]string{"HealthCheck.Active.Interval"}},
		{"bad order", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Order": "first"}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Order: expected an integer"}},
		{"bad host pattern", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["api.*.com"]}}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Match.Hosts[0]"}},
		{"bad path pattern", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Paths": ["api"]}}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Match.Paths[0]", "must start with '/'"}},
		{"bad method", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Methods": ["GE T"]}}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Match.Methods[0]"}},
		{"hosts not array", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": 5}}}, ` + okCluster + `}}`,
			[]string{"ReverseProxy.Routes.r.Match.Hosts: expected an array of strings"}},
		{"bad listen", `{"Listen": {"http": {"Address": ["nope"]}}, "ReverseProxy": {` + okCluster + `}}`,
			[]string{"Listen.http.Address[0]"}},
		{"tcp listener", `{"Listen": {"t": {"Protocols": ["TCP"], "Address": ["127.0.0.1:1"]}}, "ReverseProxy": {` + okCluster + `}}`,
			[]string{"Listen.t.Protocols", "not supported"}},
		{"no reverse proxy", `{"Listen": {}}`, []string{"ReverseProxy: missing"}},
		{"all problems at once", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "x", "Timeout": "bad"}}, "Clusters": {"c": {"Destinations": []}}}}`,
			[]string{"Routes.r.ClusterId", "Routes.r.Timeout", "Clusters.c.Destinations"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src))
			if err == nil {
				t.Fatalf("config loaded; want problems %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigErrorPositions(t *testing.T) {
	src := "{\n  \"ReverseProxy\": {\n    \"Clusters\": {\n      \"c\": {\"Destinations\": [{\"Address\": \"ftp://x\"}]}\n    }\n  }\n}"
	_, err := ParseConfig([]byte(src))
	if err == nil || !strings.Contains(err.Error(), "(line 4, col 42)") {
		t.Fatalf("want the address's position line 4 col 42, got %v", err)
	}
}

// Hash without a usable HashBy and Key picks at random, as in VKProxy, and
// says so naming the cluster.
func TestHashFallsBackToRandom(t *testing.T) {
	for _, md := range []string{`{}`, `{"HashBy": "header"}`, `{"HashBy": "items", "Key": "k"}`, `{"Key": "k"}`} {
		cfg := mustConfig(t, `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}},
		  "Clusters": {"c": {"LoadBalancingPolicy": "Hash", "Metadata": `+md+`, "Destinations": [{"Address": "a:1"}, {"Address": "b:1"}]}}}}`)
		if p := cfg.Clusters["c"].LoadBalancingPolicy; p != "Random" {
			t.Errorf("%s: policy %s, want Random", md, p)
		}
		if w := strings.Join(cfg.Warnings, "\n"); !strings.Contains(w, `cluster "c" uses Hash but`) || !strings.Contains(w, "picks at random") {
			t.Errorf("%s: warnings %q", md, w)
		}
	}
}

func TestConfigWarnings(t *testing.T) {
	cfg := mustConfig(t, `{"ReverseProxy": {
		"Sni": {},
		"Routes": {"r": {"ClusterId": "c", "Transforms": [{"PathPrefix": "/x"}], "Metadata": {"MirrorCluster": "c", "mine": "x",
			"waf_sqli": "Path ~= 'union'", "home_Content": "hi", "OnlyHttps": "true", "Cache": "Memory"}}},
		"Clusters": {"c": {"HttpRequest": {"Version": "2"}, "Destinations": [{"Address": "a:1"}]}}}}`)
	all := strings.Join(cfg.Warnings, "\n")
	for _, w := range []string{"ReverseProxy.Sni: not implemented", "ReverseProxy.Routes.r.Transforms[0].PathPrefix: transform not implemented",
		"ReverseProxy.Clusters.c.HttpRequest: not implemented",
		"Metadata.waf_sqli: not implemented", "Metadata.home_Content: not implemented", "Metadata.OnlyHttps: not implemented",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings %q lack %q", all, w)
		}
	}
	if strings.Contains(all, "mine") || strings.Contains(all, "MirrorCluster") || strings.Contains(all, "Metadata.Cache") {
		t.Errorf("user metadata keys are free-form, and stages' keys are implemented: neither may warn: %q", all)
	}
}

func TestJSONCComments(t *testing.T) {
	src := "{ // comment with \"quote\"\n \"ReverseProxy\": { /* block\n comment */ \"Routes\": {}, \"Clusters\": {\"c\": {\"Destinations\": [{\"Address\": \"http://a:1/b//\",},],},}, },\n}"
	cfg := mustConfig(t, src)
	if cfg.Clusters["c"] == nil {
		t.Fatal("cluster lost")
	}
	// A // inside a string is data, not a comment.
	cfg = mustConfig(t, `{"ReverseProxy": {"Clusters": {"c": {"Destinations": [{"Address": "http://a:1/x//y", "Host": "h"}]}}}}`)
	if got := cfg.Clusters["c"].Destinations[0].Address; got != "http://a:1/x//y" {
		t.Fatalf("address %q", got)
	}
}

func TestParseDuration(t *testing.T) {
	const d, h, m, sec = 24 * time.Hour, time.Hour, time.Minute, time.Second
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		// .NET TimeSpan.Parse, invariant culture.
		{"10", 10 * d, false},
		{"0", 0, false},
		{"1.02:30", d + 2*h + 30*m, false},
		{"02:30", 2*h + 30*m, false},
		{"00:00:30", 30 * sec, false},
		{"01:02:03", h + 2*m + 3*sec, false},
		{"1:2:3", h + 2*m + 3*sec, false},
		{"1.00:00:00", d, false},
		{"1:02:00:00", d + 2*h, false},
		{"00:00:00.5", 500 * time.Millisecond, false},
		{"00:00:00.250", 250 * time.Millisecond, false},
		{"00:00:00.0000001", 100 * time.Nanosecond, false},
		{"1.02:03:04.5", d + 2*h + 3*m + 4*sec + 500*time.Millisecond, false},
		{"-00:00:01", -sec, false},
		{" 00:01:00 ", m, false},
		// Go durations.
		{"5s", 5 * sec, false},
		{"1m30s", 90 * sec, false},
		{"250ms", 250 * time.Millisecond, false},
		// Refused.
		{"24:00:00", 0, true},
		{"00:60:00", 0, true},
		{"00:00:60", 0, true},
		{"001:00:00", 0, true},
		{"00:00:00.12345678", 0, true},
		{"00:00:00.", 0, true},
		{"1:2:3:4:5", 0, true},
		{"1.5", 0, true},
		{"abc", 0, true},
		{"", 0, true},
		{"x.00:00:00", 0, true},
		{"99999999", 0, true},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("parseDuration(%q) = %v, %v; want %v bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestParseDestination(t *testing.T) {
	tests := []struct {
		in        string
		addr      string
		base      string
		tls, fail bool
	}{
		{"http://127.0.0.1:9001", "127.0.0.1:9001", "", false, false},
		{"http://127.0.0.1:9001/base/", "127.0.0.1:9001", "/base", false, false},
		{"https://api.example.com", "api.example.com:443", "", true, false},
		{"http://[::1]:8080/x", "[::1]:8080", "/x", false, false},
		{"10.0.0.1:80", "10.0.0.1:80", "", false, false},
		{"HTTP://h:1", "h:1", "", false, false},
		{"http://h:1?q=1", "", "", false, true},
		{"http://:1", "", "", false, true},
		{"unix:/x", "", "", false, true},
		{"http://unix:/run/app.sock", "/run/app.sock", "", false, false},
		{"https://UNIX:/run/app.sock", "/run/app.sock", "", true, false},
		{"http://unix:run/app.sock", "", "", false, true},
	}
	for _, tt := range tests {
		d, err := parseDestination(tt.in)
		if (err != nil) != tt.fail {
			t.Errorf("%q: err %v", tt.in, err)
			continue
		}
		if !tt.fail && (d.addr != tt.addr || d.base != tt.base || d.tls != tt.tls) {
			t.Errorf("%q: got %+v", tt.in, d)
		}
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "none.json"))
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("want a not-exist error, got %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
