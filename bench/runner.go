package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RunConfig is the `run` subcommand's configuration.
type RunConfig struct {
	Scenarios []Scenario
	Peers     []string      // peer names to compare against: nginx, haproxy
	VKP       string        // vkp binary; "" builds one from the repo root
	Baseline  string        // another vkp binary measured as peer "vkp-base" (a before/after pair); "" for none
	Duration  time.Duration // measured time per scenario × proxy
	Warmup    time.Duration // excluded from the numbers
	Conns     int           // closed-loop connections
	Rate      float64       // open-loop requests/s
	OpenConns int           // open-loop maximum in flight
	Timeout   time.Duration // per request
	Workers   int           // nginx worker_processes, HAProxy nbthread
	Rounds    int           // each scenario is measured this many times, proxies alternating
	Load      string        // toolGo or toolWrk: what drives the measured closed-loop GETs (loadTool)
	ProxyCPUs []int         // --pin: the CPUs each proxy runs on (this process and the origins have the rest); nil: not pinned
	RestCPUs  []int         // --pin: this process's and the origins' CPUs
	Log       io.Writer     // progress and notes (stderr)
}

// Cell is the outcome of one scenario on one proxy.
type Cell struct {
	Scenario Scenario
	Proxy    string
	Round    int    // 1-based
	Status   string // "" when measured; else "not implemented", "n/a (...)", "failed: ..."
	Load     *LoadResult

	OriginRequests int64
	OriginMissing  int64   // request body bytes the origin did not receive
	Delivery       float64 // shadow body bytes / body bytes sent; < 0 when not mirrored
	ShadowBytes    int64
	Usage          usage // CPU over the measured interval, peak RSS over the proxy's life
	SettledRSS     int64 // resident memory Scenario.Settle after the load; 0 when not asked
	// CPU the origin and the shadow used over the measured interval: on a
	// shared machine a proxy can be cheap for itself and costly for them.
	OriginCPU, ShadowCPU time.Duration
	// PinnedCPUs is how many CPUs the proxy had to itself (run --pin); 0
	// when it shared them with the load generator.
	PinnedCPUs int
}

// Run measures every scenario on vkp and every installed peer, one after
// the other with identical parameters, and returns the cells in table
// order. Origins run as separate processes (re-executions of this binary)
// so their CPU is not charged to the load generator, which runs in this
// process, as wrk would.
func Run(ctx context.Context, cfg RunConfig, tmp string) ([]Cell, []string, error) {
	var notes []string
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}

	proxies := []Proxy{}
	vkpBin, vkpWhy := cfg.VKP, ""
	if vkpBin == "" {
		vkpBin, err = buildVKP(ctx, tmp, cfg.Log)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			vkpWhy = "failed: build (see log)"
			if errors.Is(err, errNoVKP) {
				vkpWhy = "skipped: no vkp main package"
			}
			notes = append(notes, "vkp: "+firstLine(err.Error()))
		}
	}
	proxies = append(proxies, vkpProxy(vkpBin))
	if cfg.Baseline != "" {
		base := vkpProxy(cfg.Baseline)
		base.Name = "vkp-base"
		proxies = append(proxies, base)
	}
	var missing []string
	for _, name := range cfg.Peers {
		if name == "floor" {
			proxies = append(proxies, floorProxy(self))
			continue
		}
		bin, err := exec.LookPath(name)
		if err != nil {
			bin = filepath.Join("/usr/sbin", name) // Debian's path, often not in a user's PATH
			if _, serr := os.Stat(bin); serr != nil {
				missing = append(missing, name)
				continue
			}
		}
		switch name {
		case "nginx":
			proxies = append(proxies, nginxProxy(bin))
		case "haproxy":
			proxies = append(proxies, haproxyProxy(bin))
		case "traefik":
			proxies = append(proxies, traefikProxy(bin))
		default:
			return nil, nil, fmt.Errorf("bench: unknown peer %q (known: nginx, haproxy, traefik, floor)", name)
		}
	}
	if len(missing) > 0 {
		line := fmt.Sprintf("%s not installed, skipped; install nginx and HAProxy with apt-get install -y nginx haproxy, Traefik as bench/README.md says",
			strings.Join(missing, ", "))
		fmt.Fprintln(cfg.Log, line)
		notes = append(notes, line)
	}

	var cells []Cell
	for _, sc := range cfg.Scenarios {
		label := sc.Label(cfg.Rate)
		fmt.Fprintf(cfg.Log, "== %s\n", label)
		origin, shadow, err := startOrigins(ctx, self, sc)
		if err != nil {
			killAll()
			return cells, notes, err
		}
		if cfg.Warmup > 0 {
			// The origins are started once for every cell of the scenario:
			// warmed here, the first proxy measured does not pay for an
			// origin's own cold start (its buffers, its heap; a cold
			// origin answered slower, which made the first proxy hold more
			// bodies) and every proxy meets the same warm origins.
			for _, o := range []*originProc{origin, shadow} {
				if !o.live() || o == shadow && sc.ShadowDelay > time.Second {
					continue // a hanging shadow is not warmed: each request would wait out its timeout
				}
				warm := LoadConfig{Label: "origin warm-up", Addr: o.addr, Method: sc.Method, Path: "/bench",
					BodySize: sc.BodySize, ExpectBodySize: sc.RespSize, Conns: cfg.Conns, Timeout: cfg.Timeout,
					Duration: cfg.Warmup, Stream: sc.Stream}
				if sc.Conns > 0 {
					warm.Conns = sc.Conns
				}
				if sc.Open {
					warm.Rate, warm.Conns = cfg.Rate, cfg.OpenConns
				}
				if _, err := RunLoad(ctx, warm); err != nil {
					killAll()
					return cells, notes, err
				}
			}
		}
		rounds := max(cfg.Rounds, 1)
		for round := 1; round <= rounds; round++ {
			for _, px := range proxies {
				c := Cell{Scenario: sc, Proxy: px.Name, Round: round, Delivery: -1}
				switch why := px.Supports(sc); {
				case px.Name == "vkp" && vkpWhy != "":
					c.Status = vkpWhy
				case why != "":
					c.Status = why
				default:
					dir, err := os.MkdirTemp(tmp, px.Name+"-")
					if err == nil {
						err = runCell(ctx, cfg, px, sc, dir, origin, shadow, &c)
					}
					switch {
					case ctx.Err() != nil:
						killAll()
						return cells, notes, ctx.Err()
					case errors.Is(err, errNotImplemented):
						c.Status = "not implemented"
					case err != nil:
						c.Status = "failed: " + firstLine(err.Error())
						fmt.Fprintf(cfg.Log, "  %s: %v\n", px.Name, err)
					}
				}
				if c.Status != "" {
					fmt.Fprintf(cfg.Log, "  %-8s %s\n", px.Name, c.Status)
				}
				cells = append(cells, c)
			}
		}
		origin.stop(2 * time.Second)
		if shadow.live() {
			shadow.stop(2 * time.Second)
		}
	}
	return cells, notes, nil
}

// originProc is an origin child and the address it bound. A dead shadow
// has an address and no process.
type originProc struct {
	*proc
	addr string
}

func (o *originProc) live() bool { return o != nil && o.proc != nil }

// cpu is the CPU time the origin process has used so far; 0 without one.
func (o *originProc) cpu() time.Duration {
	if !o.live() {
		return 0
	}
	return groupUsage(o.pid()).CPU
}

func startOrigins(ctx context.Context, self string, sc Scenario) (*originProc, *originProc, error) {
	origin, err := startOrigin(self, "origin", sc.RespSize, 0, sc.CacheControl)
	if err != nil {
		return nil, nil, err
	}
	if !sc.Mirror {
		return origin, nil, nil
	}
	if sc.ShadowDead {
		addr, err := freePort() // nothing listens there
		if err != nil {
			origin.stop(time.Second)
			return nil, nil, err
		}
		return origin, &originProc{addr: addr}, nil
	}
	shadow, err := startOrigin(self, "shadow", sc.RespSize, sc.ShadowDelay, "")
	if err != nil {
		origin.stop(time.Second)
		return nil, nil, err
	}
	return origin, shadow, nil
}

func startOrigin(self, name string, size int, delay time.Duration, cacheControl string) (*originProc, error) {
	line := make(chan string, 1)
	p, err := startProc(name, []string{self, "origin", "--listen", "127.0.0.1:0",
		"--size", strconv.Itoa(size), "--delay", delay.String(), "--cache-control", cacheControl}, nil, line)
	if err != nil {
		return nil, err
	}
	select {
	case l, ok := <-line:
		if addr, found := strings.CutPrefix(l, "listening on "); ok && found {
			return &originProc{proc: p, addr: addr}, nil
		}
	case <-time.After(5 * time.Second):
	}
	p.stop(time.Second)
	return nil, fmt.Errorf("bench: %s did not report its address\n%s", name, p.logs)
}

// runCell starts px for sc, warms it up, measures, checks the origins and
// stops it.
func runCell(ctx context.Context, cfg RunConfig, px Proxy, sc Scenario, dir string, origin, shadow *originProc, c *Cell) error {
	listen, err := freePort()
	if err != nil {
		return err
	}
	topo := Topology{Listen: listen, Origin: origin.addr, Cache: sc.Cache, Workers: cfg.Workers, Dir: dir, Log: sc.Log, Answer: sc.RespSize}
	if shadow != nil {
		topo.Shadow = shadow.addr
	}
	argv, err := px.Write(dir, topo)
	if err != nil {
		return err
	}
	if err := preflight(ctx, px, dir, argv); err != nil {
		return err
	}
	argv = pinArgv(cfg.ProxyCPUs, argv)
	var env []string
	if px.Env != nil {
		env = px.Env(cfg.Workers)
	}
	var stderr *os.File
	if px.LogFile != nil {
		if stderr, err = os.Create(px.LogFile(dir)); err != nil {
			return err
		}
		defer stderr.Close()
	}
	p, err := startProcTo(px.Name, argv, env, nil, stderr)
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	if err := waitReady(ctx, p, listen, 10*time.Second); err != nil {
		return err
	}

	lc := LoadConfig{
		Label:          px.Name + " " + sc.Label(cfg.Rate),
		Addr:           listen,
		Method:         sc.Method,
		Path:           "/bench",
		BodySize:       sc.BodySize,
		ExpectBodySize: sc.RespSize,
		Conns:          cfg.Conns,
		Timeout:        cfg.Timeout,
		Stream:         sc.Stream,
		Tool:           cfg.Load,
	}
	if sc.Conns > 0 {
		lc.Conns = sc.Conns
	}
	if sc.Open {
		lc.Rate, lc.Conns = cfg.Rate, cfg.OpenConns
	}
	if cfg.Warmup > 0 && !sc.Cold {
		warm := lc
		// The Go client checks every body, which wrk does not.
		warm.Label, warm.Duration, warm.Tool = lc.Label+" (warm-up)", cfg.Warmup, toolGo
		if _, err := RunLoad(ctx, warm); err != nil {
			return err
		}
		if shadow.live() {
			// Let warm-up copies land before zeroing, or they would be
			// counted as deliveries of the measured run.
			if _, err := settleStats(ctx, shadow.addr, 300*time.Millisecond, 2*time.Second); err != nil {
				return err
			}
		}
	}
	if sc.IdleBefore > 0 {
		select {
		case <-time.After(sc.IdleBefore):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, o := range []*originProc{origin, shadow} {
		if o.live() {
			if err := resetStats(o.addr); err != nil {
				return err
			}
		}
	}
	before := groupUsage(p.pid())
	oBefore, sBefore := origin.cpu(), shadow.cpu()
	lc.Duration, lc.Progress = cfg.Duration, cfg.Log
	if sc.Duration > 0 {
		lc.Duration = sc.Duration
	}
	res, err := RunLoad(ctx, lc)
	if err != nil {
		return err
	}
	after := groupUsage(p.pid())
	c.Load = res
	c.Usage = usage{CPU: after.CPU - before.CPU, PeakRSS: after.PeakRSS}
	c.PinnedCPUs = len(cfg.ProxyCPUs)
	if sc.Settle > 0 {
		select {
		case <-time.After(sc.Settle):
		case <-ctx.Done():
			return ctx.Err()
		}
		c.SettledRSS = groupUsage(p.pid()).RSS
	}
	c.OriginCPU, c.ShadowCPU = origin.cpu()-oBefore, shadow.cpu()-sBefore
	if p.exited() {
		return fmt.Errorf("bench: %s exited during the run: %v\n%s", px.Name, p.err, p.logs)
	}

	ost, err := fetchStats(origin.addr)
	if err != nil {
		return err
	}
	c.OriginRequests = ost.Requests
	if miss := res.BodySent - ost.BodyBytes; miss > 0 {
		c.OriginMissing = miss
	}
	if shadow != nil && !shadow.live() {
		c.Delivery = 0 // a dead shadow receives nothing
	}
	if shadow.live() {
		sst, err := settleStats(ctx, shadow.addr, 300*time.Millisecond, 2*time.Second)
		if err != nil {
			return err
		}
		c.ShadowBytes = sst.BodyBytes
		if res.BodySent > 0 {
			c.Delivery = float64(sst.BodyBytes) / float64(res.BodySent)
		}
	}
	return nil
}

// preflight checks a config before the proxy starts: `vkp validate`
// reports features vkp does not have yet as a warning containing "not
// implemented"; `nginx -t` catches a bad generated config early.
func preflight(ctx context.Context, px Proxy, dir string, argv []string) error {
	var check []string
	switch {
	case strings.HasPrefix(px.Name, "vkp"):
		check = []string{px.Bin, "validate", "--config", argv[3]} // bin serve --config PATH [flags]
	case px.Name == "nginx":
		check = nginxArgs(px.Bin, dir, filepath.Join(dir, "nginx.conf"), "-t", "-q")
	case px.Name == "haproxy":
		check = []string{px.Bin, "-c", "-q", "-f", argv[2]}
	default:
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, check[0], check[1:]...).CombinedOutput()
	if strings.HasPrefix(px.Name, "vkp") && bytes.Contains(bytes.ToLower(out), []byte("not implemented")) {
		return errNotImplemented
	}
	if err != nil {
		return fmt.Errorf("bench: %s: %v\n%s", strings.Join(check, " "), err, out)
	}
	return nil
}

var errNoVKP = errors.New("bench: no vkp main package")

// buildVKP runs `go build -o TMP/vkp .` in the module root.
func buildVKP(ctx context.Context, tmp string, log io.Writer) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
		return "", fmt.Errorf("%w in %s (pass --vkp PATH)", errNoVKP, root)
	}
	bin := filepath.Join(tmp, "vkp")
	fmt.Fprintf(log, "building vkp: go build -o %s . (in %s)\n", bin, root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(log, "%s\n", out)
		return "", fmt.Errorf("bench: go build vkp: %w: %s", err, firstLine(string(out)))
	}
	return bin, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
