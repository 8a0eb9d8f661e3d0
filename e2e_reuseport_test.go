//go:build linux

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// --reuse-port: a second vkp binds the address a running one holds (as a
// new binary does during an upgrade); once the old one stops, the new one
// answers everything on it. Without the flag the second start fails
// clearly.
func TestE2EReusePort(t *testing.T) {
	dest := origin(t, e2eOrigin)
	cfg := e2eConfig(dest)
	admin := freeAddr(t)
	old := startVKP(t, cfg, "--reuse-port", "--grace", "5s", "--admin", admin)
	addr := old.addr

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "vkp.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, vkpBinary(t), "serve", "--config", path, "--listen", addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "listen "+addr) || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("a second vkp without --reuse-port: %v\n%s", err, out)
	}

	// The admin listener never takes the proxy's own address, with the
	// flag either.
	out, err = exec.CommandContext(ctx, vkpBinary(t), "serve", "--config", path, "--reuse-port", "--listen", addr, "--admin", addr).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "never shares the proxy's address") {
		t.Fatalf("--admin on the proxy's address with --reuse-port: exit %d\n%s", code, out)
	}

	// The next binary shares the admin address as well.
	next := startVKP(t, cfg, "--reuse-port", "--listen", addr, "--admin", admin)
	for i := range 20 {
		if code, body := get(t, addr, "/api/x", ""); code != 200 || body != "GET /api/x 0" {
			t.Fatalf("request %d with both running: %d %q", i, code, body)
		}
	}
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-old.done:
		old.done <- err
		if err != nil {
			t.Fatalf("the old vkp exited with %v\n%s", err, old.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the old vkp did not stop\n%s", old.log())
	}
	for i := range 20 {
		if code, body := get(t, addr, "/api/y", ""); code != 200 || body != "GET /api/y 0" {
			t.Fatalf("request %d after the old one stopped: %d %q\n%s", i, code, body, next.log())
		}
	}
	if code, _ := get(t, admin, "/healthz", ""); code != 200 {
		t.Fatalf("the next vkp's admin listener: %d", code)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
