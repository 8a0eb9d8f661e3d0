package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Every child runs in its own process group (nginx and its workers, vkp,
// an origin) so stop can signal the whole group, and gets SIGKILL if the
// runner dies without cleaning up (Pdeathsig). All live children are in
// the registry; killAll is the last word on exit and on Ctrl-C.

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, valid after done
	logs *tailBuffer   // last stderr (and stdout) bytes, for failure messages
}

var registry struct {
	sync.Mutex
	procs map[*proc]struct{}
}

// startProc starts argv, with env added to this process's environment, in
// its own process group. If firstLine is not nil
// it receives the child's first stdout line (origins print their address).
func startProc(name string, argv, env []string, firstLine chan<- string) (*proc, error) {
	return startProcTo(name, argv, env, firstLine, nil)
}

// startProcTo is startProc with the child's stderr going to a file when
// stderr is not nil (its last bytes are then not in failure messages).
func startProcTo(name string, argv, env []string, firstLine chan<- string, stderr *os.File) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), logs: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = p.logs
	if stderr != nil {
		cmd.Stderr = stderr
	}
	var stdout io.ReadCloser
	if firstLine != nil {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		cmd.Stdout = p.logs
	}
	registry.Lock()
	defer registry.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	if registry.procs == nil {
		registry.procs = map[*proc]struct{}{}
	}
	registry.procs[p] = struct{}{}
	if stdout != nil {
		go func() {
			sc := bufio.NewScanner(stdout)
			if sc.Scan() {
				firstLine <- sc.Text()
			}
			close(firstLine)
			_, _ = io.Copy(io.Discard, stdout)
		}()
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, waits up to grace for the leader to
// exit, then SIGKILLs whatever is left of the group (nginx workers, say).
func (p *proc) stop(grace time.Duration) {
	pgid := p.pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	// Members that outlived the leader are still in the group.
	for i := 0; i < 50 && len(groupPIDs(pgid)) > 0; i++ {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
	registry.Lock()
	delete(registry.procs, p)
	registry.Unlock()
}

// killAll stops every registered child, quickly.
func killAll() {
	registry.Lock()
	ps := make([]*proc, 0, len(registry.procs))
	for p := range registry.procs {
		ps = append(ps, p)
	}
	registry.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(time.Second) }()
	}
	wg.Wait()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// freePort returns a loopback address with a port that was free a moment
// ago. nginx and HAProxy cannot report the port they bound to :0, so the
// runner picks one; the race with other processes is accepted.
func freePort() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// waitReady waits until a GET of /bench on addr is answered with anything
// but 404, p exits, or timeout. Accepting connections is not enough: a proxy
// may open its port before its routes are loaded (Traefik's file provider
// comes up after its entry points).
func waitReady(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		status, _, err := fasthttp.GetTimeout(nil, "http://"+addr+"/bench", 2*time.Second)
		if err == nil && status != fasthttp.StatusNotFound {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("bench: %s exited before answering on %s: %v\n%s", p.name, addr, p.err, p.logs)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s not answering /bench on %s after %s (last status %d, error %v)\n%s",
				p.name, addr, timeout, status, err, p.logs)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// usage is the resource use of a process group.
type usage struct {
	CPU     time.Duration // utime+stime of live members plus their reaped children
	PeakRSS int64         // sum of members' VmHWM, bytes (an upper bound of the group's peak)
	RSS     int64         // sum of members' VmRSS now, bytes
}

// groupUsage reads /proc for every process in process group pgid.
func groupUsage(pgid int) usage {
	var u usage
	for _, pid := range groupPIDs(pgid) {
		if f := statFields(pid); len(f) > 14 {
			var ticks int64
			for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
				n, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += n
			}
			u.CPU += time.Duration(ticks) * time.Second / clockTicks
		}
		u.PeakRSS += statusKB(pid, "VmHWM:")
		u.RSS += statusKB(pid, "VmRSS:")
	}
	return u
}

// groupPIDs lists the live processes whose process group is pgid.
func groupPIDs(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(pid)
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// statFields returns /proc/PID/stat fields from field 3 (state) on, so
// index i is field i+3 of proc(5). The command name may contain spaces and
// parentheses, hence the split at the last ')'.
func statFields(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// statusKB returns a "kB" field of /proc/PID/status (VmHWM: the peak
// resident set size, VmRSS: the current one) in bytes.
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

var errNotImplemented = errors.New("not implemented")
