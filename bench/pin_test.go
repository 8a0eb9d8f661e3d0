//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// cpusAllowed reads a status file's Cpus_allowed_list.
func cpusAllowed(t *testing.T, status string) string {
	t.Helper()
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list in %s", status)
	return ""
}

func TestCPUSplit(t *testing.T) {
	proxy, rest, err := cpuSplit()
	if runtime.NumCPU() < 2 {
		if err == nil {
			t.Fatalf("one CPU split into %v and %v", proxy, rest)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(proxy) == 0 || len(rest) < len(proxy) || len(proxy)+len(rest) != runtime.NumCPU() {
		t.Fatalf("split %v / %v of %d CPUs", proxy, rest, runtime.NumCPU())
	}
	seen := map[int]bool{}
	for _, c := range append(append([]int{}, proxy...), rest...) {
		if seen[c] {
			t.Fatalf("CPU %d on both sides: %v / %v", c, proxy, rest)
		}
		seen[c] = true
	}
}

// A proxy started through pinArgv runs on its CPUs only.
func TestPinArgv(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset")
	}
	proxy, _, err := cpuSplit()
	if err != nil {
		t.Skip(err)
	}
	p, err := startProc("sleep", pinArgv(proxy, []string{"sleep", "30"}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	want := cpuList(proxy)
	var got string
	for i := 0; i < 100; i++ { // taskset executes sleep: the same pid, new CPUs
		exe, _ := os.Readlink(filepathJoinProc(p.pid(), "exe"))
		if got = cpusAllowed(t, filepathJoinProc(p.pid(), "status")); got == want && strings.HasSuffix(exe, "sleep") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pinned proxy runs on %q, want %q", got, want)
}

func filepathJoinProc(pid int, name string) string {
	return filepath.Join("/proc", strconv.Itoa(pid), name)
}

// pinSelf moves every thread, the ones started before it and after, and
// the children this process starts.
func TestPinSelf(t *testing.T) {
	if os.Getenv("BENCH_PIN_CHILD") == "" {
		if runtime.NumCPU() < 2 {
			t.Skip("one CPU")
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestPinSelf$", "-test.v")
		cmd.Env = append(os.Environ(), "BENCH_PIN_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPinSelf") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	_, rest, err := cpuSplit()
	if err != nil {
		t.Fatal(err)
	}
	// Threads that exist before the pin: goroutines locked to their own.
	var wg sync.WaitGroup
	hold := make(chan struct{})
	lock := func(n int) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				<-hold
			}()
		}
	}
	lock(3)
	time.Sleep(20 * time.Millisecond)
	if err := pinSelf(rest); err != nil {
		t.Fatal(err)
	}
	lock(3) // and threads started after it
	time.Sleep(20 * time.Millisecond)
	want := cpuList(rest)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if got := cpusAllowed(t, filepath.Join("/proc/self/task", task.Name(), "status")); got != want {
			t.Errorf("thread %s on %q, want %q", task.Name(), got, want)
		}
	}
	close(hold)
	wg.Wait()
	out, err := exec.Command("grep", "Cpus_allowed_list", "/proc/self/status").Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "\t"+want) {
		t.Fatalf("a child runs on %q (%v), want %q", out, err, want)
	}
	if runtime.GOMAXPROCS(0) != len(rest) {
		t.Fatalf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), len(rest))
	}
}
