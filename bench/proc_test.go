package main

import (
	"os"
	"testing"
	"time"
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
	if vmHWM(os.Getpid()) <= 0 {
		t.Error("VmHWM of self is 0")
	}
}
