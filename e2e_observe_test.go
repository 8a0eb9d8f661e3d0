package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// adminGet fetches a path of the admin listener.
func adminGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+path, 5*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return status, string(body)
}

// The admin listener as Kubernetes and Prometheus use it: /healthz,
// /readyz, and /metrics parsed by Prometheus' own text-format parser.
func TestE2EAdminMetrics(t *testing.T) {
	dest := origin(t, e2eOrigin)
	admin := freeAddr(t)
	p := startVKP(t, e2eConfig(dest), "--admin", admin)
	for i := 0; i < 3; i++ {
		cacheGet(t, p.addr, "/api/x")
	}
	cacheGet(t, p.addr, "/nowhere")
	if s, b := adminGet(t, admin, "/healthz"); s != 200 || b != "ok\n" {
		t.Fatalf("/healthz: %d %q", s, b)
	}
	if s, b := adminGet(t, admin, "/readyz"); s != 200 || b != "ready\n" {
		t.Fatalf("/readyz: %d %q", s, b)
	}
	if s, b := adminGet(t, admin, "/debug/pprof/goroutine?debug=1"); s != 200 || !strings.Contains(b, "goroutine") {
		t.Fatalf("/debug/pprof/goroutine: %d %.200q", s, b)
	}
	s, body := adminGet(t, admin, "/metrics")
	if s != 200 {
		t.Fatalf("/metrics: %d", s)
	}
	// Legacy validation: names Prometheus accepts without quoting.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	value := func(family string, labels map[string]string) float64 {
		t.Helper()
		f := families[family]
		if f == nil {
			t.Fatalf("no %s in /metrics:\n%s", family, body)
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				return m.Untyped.GetValue()
			}
		}
		t.Fatalf("no %s%v in /metrics:\n%s", family, labels, body)
		return 0
	}
	if v := value("vkp_requests_total", map[string]string{"route": "api", "code": "2xx"}); v != 3 {
		t.Errorf("requests to route api: %v, want 3", v)
	}
	if v := value("vkp_requests_total", map[string]string{"route": "", "code": "4xx"}); v != 1 {
		t.Errorf("unrouted 4xx: %v, want 1", v)
	}
	if v := value("vkp_upstream_duration_seconds", map[string]string{"cluster": "main"}); v != 3 {
		t.Errorf("upstream duration samples: %v, want 3", v)
	}
	if v := value("vkp_destination_up", map[string]string{"cluster": "main", "destination": "http://" + dest}); v != 1 {
		t.Errorf("destination up: %v", v)
	}
	value("vkp_mirror_due_total", nil)
	value("vkp_requests_in_flight", nil)
	value("process_resident_memory_bytes", nil)
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The access log as an operator reads it, and --log-format text.
func TestE2EAccessLog(t *testing.T) {
	dest := origin(t, e2eOrigin)
	p := startVKP(t, e2eConfig(dest), "--access-log")
	cacheGet(t, p.addr, "/api/thing?q=1")
	var line map[string]any
	eventually(t, "the access line", func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.log()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
				line = m
				return true
			}
		}
		return false
	})
	if line["route"] != "api" || line["path"] != "/api/thing" || line["status"] != float64(200) || line["category"] != "Vkp.Access" {
		t.Fatalf("access line %v", line)
	}

	text := startVKP(t, e2eConfig(dest), "--access-log", "--log-format", "text")
	cacheGet(t, text.addr, "/api/t")
	eventually(t, "a text access line", func() bool {
		return bytes.Contains([]byte(text.log()), []byte(`msg=request category=Vkp.Access route=api`))
	})
}
