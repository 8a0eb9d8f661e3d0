// Package deploy holds the container image recipe and a Kubernetes sidecar
// example. No Docker engine runs in CI, so this test checks what it can: the
// binary the Dockerfile builds is static, and the example config loads.
package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vkp-proxy/vkp/engine"
)

func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "CGO_ENABLED=0 go build") || !strings.Contains(string(df), "ENTRYPOINT [\"/vkp\"]") {
		t.Fatal("Dockerfile no longer builds vkp with CGO_ENABLED=0 into /vkp")
	}
	bin := filepath.Join(t.TempDir(), "vkp")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the image binary has a dynamic loader; the distroless/static base cannot run it")
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "vkp ") {
		t.Fatalf("vkp version: %v %q", err, out)
	}
}

func TestSidecarExampleConfigLoads(t *testing.T) {
	y, err := os.ReadFile("sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The ConfigMap's vkp.json block: the lines indented under "vkp.json: |".
	lines := strings.Split(string(y), "\n")
	var cfg []string
	in := false
	for _, l := range lines {
		if strings.HasSuffix(strings.TrimSpace(l), "vkp.json: |") {
			in = true
			continue
		}
		if in {
			if !strings.HasPrefix(l, "    ") && strings.TrimSpace(l) != "" {
				break
			}
			cfg = append(cfg, l)
		}
	}
	c, err := engine.ParseConfig([]byte(strings.Join(cfg, "\n")))
	if err != nil {
		t.Fatalf("sidecar example config: %v", err)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("sidecar example config warns: %v", c.Warnings)
	}
	if _, ok := c.Routes[0].Metadata.Get("MirrorCluster"); !ok {
		t.Fatal("the sidecar example is meant to mirror")
	}
}
