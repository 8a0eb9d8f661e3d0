package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The exit codes doc.go promises: 0 ok, 2 usage, 3 invalid config.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}}, "Clusters": {"c": {"Destinations": [{"Address": "127.0.0.1:1"}]}}}}`)
	bad := write("bad.json", `{"ReverseProxy": {"Routes": {"r": {"ClusterId": "x"}}}}`)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"validate ok", []string{"vkp", "validate", "--config", good}, ExitOK, "ok (1 route, 1 cluster"},
		{"validate bad", []string{"vkp", "validate", "--config", bad}, ExitBadConfig, `cluster "x" is not defined`},
		{"validate missing file", []string{"vkp", "validate", "--config", filepath.Join(dir, "none.json")}, ExitBadConfig, "no such file"},
		{"validate without --config", []string{"vkp", "validate"}, ExitUsage, "config"},
		{"serve bad config", []string{"vkp", "serve", "--config", bad}, ExitBadConfig, "invalid config"},
		{"serve bad flag value", []string{"vkp", "serve", "--config", good, "--body-memory", "lots"}, ExitUsage, "--body-memory"},
		{"serve unknown flag", []string{"vkp", "serve", "--nope"}, ExitUsage, "nope"},
		{"version", []string{"vkp", "version"}, ExitOK, "vkp "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code || !strings.Contains(all, tc.out) {
				t.Fatalf("exit %d, want %d; output lacks %q?\n%s", code, tc.code, tc.out, all)
			}
		})
	}
}

func TestRedisAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:6379":    "127.0.0.1:6379",
		"redis://u:p@h:1/2": "redis://u:p@h:1/2",
		"localhost:6379,password=s3cret,defaultDatabase=2": "redis://:s3cret@localhost:6379/2",
		"h:1,ssl=true,abortConnect=false":                  "rediss://h:1",
		"h:1,h2:2,user=u,password=p":                       "redis://u:p@h:1",
	} {
		got, err := redisAddr(in)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"password=x", "h:1,defaultDatabase=two"} {
		if _, err := redisAddr(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestSameBind(t *testing.T) {
	a := func(s string) net.Addr {
		ap, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	}
	for _, tt := range []struct {
		x, y string
		want bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"0.0.0.0:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "[::]:8080", true},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
	} {
		if got := sameBind(a(tt.x), a(tt.y)); got != tt.want {
			t.Errorf("sameBind(%s, %s) = %v", tt.x, tt.y, got)
		}
	}
}
