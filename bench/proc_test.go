package main

import (
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestStopKillsGroup: a child that forked a grandchild is gone, with the
// grandchild, after stop; the way nginx workers must not outlive a run.
func TestStopKillsGroup(t *testing.T) {
	p, err := startProc("sh", []string{"sh", "-c", "trap '' TERM; sleep 30 & sleep 30"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pgid := p.pid()
	deadline := time.Now().Add(2 * time.Second)
	for len(groupPIDs(pgid)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(groupPIDs(pgid)); n < 2 {
		t.Fatalf("group has %d processes, want ≥ 2", n)
	}
	if u := groupUsage(pgid); u.PeakRSS <= 0 {
		t.Errorf("group peak RSS = %d, want > 0", u.PeakRSS)
	}
	p.stop(200 * time.Millisecond) // sh ignores TERM: the SIGKILL path
	if pids := groupPIDs(pgid); len(pids) != 0 {
		t.Errorf("processes left in group %d: %v", pgid, pids)
	}
	registry.Lock()
	n := len(registry.procs)
	registry.Unlock()
	if n != 0 {
		t.Errorf("registry holds %d processes after stop", n)
	}
}

func TestSelfUsage(t *testing.T) {
	if f := statFields(os.Getpid()); len(f) < 15 {
		t.Fatalf("stat fields: %v", f)
	}
	if statusKB(os.Getpid(), "VmHWM:") <= 0 {
		t.Error("VmHWM of self is 0")
	}
}

// TestWaitReady: a proxy whose port is open but whose routes are not
// loaded yet answers 404; waitReady waits for the first other answer, and
// gives up with the last status when none comes.
func TestWaitReady(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls, routedAfter atomic.Int32
	routedAfter.Store(3)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if calls.Add(1) <= routedAfter.Load() {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	}}
	go srv.Serve(ln)
	defer srv.Shutdown()
	p, err := startProc("sh", []string{"sh", "-c", "sleep 30"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	addr := ln.Addr().String()
	if err := waitReady(context.Background(), p, addr, 5*time.Second); err != nil {
		t.Fatalf("waitReady: %v", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("waitReady returned after %d requests, want 4 (three 404s, then 200)", n)
	}
	routedAfter.Store(1 << 30)
	err = waitReady(context.Background(), p, addr, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "last status 404") {
		t.Errorf("waitReady on a proxy that never routes = %v, want an error naming status 404", err)
	}
}
