package main

// VKProxy configs moving over, through the built binary: one test per
// behaviour a VKProxy user expects.

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// hostOrigin answers with the Host it was sent.
func hostOrigin(t *testing.T) string {
	return origin(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString(string(ctx.Host()) + "|" + string(ctx.Request.Header.Peek("X-Forwarded-Host")))
	})
}

func get(t *testing.T, addr, path, host string) (int, string) {
	t.Helper()
	c := &fasthttp.HostClient{Addr: addr}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	if host != "" {
		req.Header.SetHost(host)
		req.UseHostHeader = true
	}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

// Item 1: the upstream gets the destination's authority as Host (or its Host
// setting), not the client's, unless the route asks with
// RequestHeaderOriginalHost; X-Forwarded-Host carries the client's. Mirror
// copies follow the rule with the mirror destination.
func TestE2EHostSentUpstream(t *testing.T) {
	plain, named := hostOrigin(t), hostOrigin(t)
	var shadowHost string
	var mu sync.Mutex
	shadow := origin(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		shadowHost = string(ctx.Host())
		mu.Unlock()
	})
	p := startVKP(t, `{"ReverseProxy": {
	  "Routes": {
	    "plain": {"ClusterId": "plain", "Match": {"Paths": ["/plain"]}, "Metadata": {"MirrorCluster": "shadow"}},
	    "named": {"ClusterId": "named", "Match": {"Paths": ["/named"]}},
	    "keep":  {"ClusterId": "plain", "Match": {"Paths": ["/keep"]}, "Transforms": [{"RequestHeaderOriginalHost": "true"}]}},
	  "Clusters": {
	    "plain":  {"Destinations": [{"Address": "http://`+plain+`"}]},
	    "named":  {"Destinations": [{"Address": "http://`+named+`", "Host": "internal.svc"}]},
	    "shadow": {"Destinations": [{"Address": "http://`+shadow+`"}]}}}}`)
	for path, want := range map[string]string{
		"/plain": plain + "|public.example",
		"/named": "internal.svc|public.example",
		"/keep":  "public.example|public.example",
	} {
		if st, body := get(t, p.addr, path, "public.example"); st != 200 || body != want {
			t.Errorf("%s: %d %q, want Host|X-Forwarded-Host %q", path, st, body, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		h := shadowHost
		mu.Unlock()
		if h == shadow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mirror copy's Host is %q, want the shadow's authority %q", h, shadow)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Item 2: a localhost pattern also matches 127.0.0.1 and [::1].
func TestE2ELocalhostPattern(t *testing.T) {
	o := hostOrigin(t)
	p := startVKP(t, `{"ReverseProxy": {"Routes": {"l": {"ClusterId": "c", "Match": {"Hosts": ["localhost:5000"]}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://`+o+`"}]}}}}`)
	for _, host := range []string{"localhost:5000", "127.0.0.1:5000", "[::1]:5000"} {
		if st, _ := get(t, p.addr, "/", host); st != 200 {
			t.Errorf("Host %s: %d, want 200", host, st)
		}
	}
	if st, _ := get(t, p.addr, "/", "example.com:5000"); st != 404 {
		t.Errorf("Host example.com:5000: %d, want 404", st)
	}
}

// Items 3 and 6: numbers compare as booleans; "10" is a TimeSpan (ten
// days), "02:30" too.
func TestE2EStatementNumbersAndTimeSpans(t *testing.T) {
	o := hostOrigin(t)
	p := startVKP(t, `{"ReverseProxy": {"DefaultProxyTimeout": "10",
	  "Routes": {
	    "plain": {"ClusterId": "c", "Timeout": "02:30", "Match": {"Statement": "IsHttps = 0 and HasFormContentType in (0)"}},
	    "tls":   {"ClusterId": "c", "Order": 1, "Match": {"Statement": "IsHttps = 1"}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://`+o+`"}]}}}}`)
	if st, _ := get(t, p.addr, "/", "a"); st != 200 {
		t.Fatalf("IsHttps = 0 on plain HTTP: %d, want 200", st)
	}
}

// Item 4: Hash without HashBy/Key loads with a warning naming the cluster
// and picks at random.
func TestE2EHashFallsBack(t *testing.T) {
	o := hostOrigin(t)
	p := startVKP(t, `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "apidemo"}},
	  "Clusters": {"apidemo": {"LoadBalancingPolicy": "Hash", "Destinations": [{"Address": "http://`+o+`"}]}}}}`)
	if st, _ := get(t, p.addr, "/", "a"); st != 200 {
		t.Fatalf("%d", st)
	}
	if !strings.Contains(p.log(), `cluster "apidemo" uses Hash but has no Metadata.HashBy`) {
		t.Fatalf("no warning naming the cluster:\n%s", p.log())
	}
}

// Item 5: a unix-socket destination, with a real socket.
func TestE2EUnixSocketDestination(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("via socket " + string(ctx.Host())) }}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	p := startVKP(t, `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://unix:`+sock+`"}]}}}}`)
	if st, body := get(t, p.addr, "/x", "public.example"); st != 200 || body != "via socket localhost" {
		t.Fatalf("%d %q", st, body)
	}
}

// Items 7, 8 and 9: the command line as a VKProxy user types it, and what
// vkp says of syntax and fragments it does not take.
func TestE2ECommandLineAndMessages(t *testing.T) {
	bin := vkpBinary(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	newer := write("newer.json", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Statement": "Request.Path == '/a' && Request.Headers['x-env'] == 'test'"}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`)
	cors := write("cors.json", `{"ReverseProxy": {"Routes": {"b": {"Order": 0, "Match": {"Hosts": ["api.com"], "Paths": ["*"]}, "ClusterId": "ClusterB",
	  "Metadata": {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST,PUT"}}}}}`)
	sampler := write("sampler.json", `{"Logging": {"LogLevel": {"Default": "Debug"}},
	  "RandomProbabilisticSampler": {"Rules": [{"CategoryName": "System.*", "Probability": 0.1}]}}`)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"--version", []string{"--version"}, 0, "vkp "},
		{"unknown command", []string{"frob"}, 2, "the commands are serve (alias proxy), validate and version"},
		{"newer syntax", []string{"validate", "-c", newer}, 3, "write it as: Path = '/a' and Header('x-env') = 'test'"},
		{"CORS fragment", []string{"validate", "-c", cors}, 3, `the config has no ReverseProxy.Clusters; add "Clusters": {"ClusterB": {"Destinations"`},
		{"sampler fragment", []string{"validate", "-c", sampler}, 3, "this file has only Logging, RandomProbabilisticSampler"},
		{"seed CORS config", []string{"validate", "-c", "configs/seed-cors.json"}, 0, "ok (1 route, 1 cluster, 0 warnings)"},
		{"seed rolling config", []string{"validate", "-c", "configs/seed-rolling.json"}, 0, "ok (1 route, 1 cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			out, _ := cmd.CombinedOutput()
			if cmd.ProcessState.ExitCode() != tc.code || !strings.Contains(string(out), tc.out) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s", cmd.ProcessState.ExitCode(), tc.code, tc.out, out)
			}
		})
	}

	// `vkp proxy -c file`, VKProxy's command, serves.
	o := hostOrigin(t)
	cfg := write("proxy.json", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}}, "Clusters": {"c": {"Destinations": [{"Address": "http://`+o+`"}]}}}}`)
	cmd := exec.Command(bin, "proxy", "-c", cfg, "--listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }() //nolint:errcheck
	var seen []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(seen), `"msg":"listening"`) {
		n, err := stderr.Read(buf)
		seen = append(seen, buf[:n]...)
		if err != nil {
			t.Fatalf("vkp proxy -c did not start serving: %v\n%s", err, seen)
		}
	}
}
