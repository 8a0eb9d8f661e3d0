// Command bench is vkp's load harness: a fake origin, a load generator and
// a runner that measures vkp next to nginx and HAProxy in one run on one
// machine and prints a Markdown table. See bench/README.md.
//
//	go run ./bench run                      # the full table
//	go run ./bench origin --listen 127.0.0.1:9001 --size 128
//	go run ./bench load --addr 127.0.0.1:8080 --method POST --body-size 1048576
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After a signal the runner unwinds and cleans up; if that hangs,
		// kill the children and leave anyway.
		<-ctx.Done()
		stop()
		time.Sleep(15 * time.Second)
		killAll()
		os.Exit(130)
	}()
	err := newApp().RunContext(ctx, os.Args)
	killAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if ctx.Err() != nil {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "bench",
		Usage: "vkp load harness: origin, load generator, side-by-side runner",
		Commands: []*cli.Command{
			{
				Name:  "origin",
				Usage: "serve a fake origin that counts requests and body bytes (GET /__stats, POST /__reset)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "address; port 0 picks one and prints it"},
					&cli.IntFlag{Name: "size", Value: 128, Usage: "response body bytes"},
					&cli.DurationFlag{Name: "delay", Usage: "delay before each response"},
					&cli.StringFlag{Name: "cache-control", Usage: "Cache-Control response header (empty: none)"},
				},
				Action: func(c *cli.Context) error {
					return runOrigin(c.Context, c.String("listen"), OriginConfig{
						Size: c.Int("size"), Delay: c.Duration("delay"), CacheControl: c.String("cache-control"),
					})
				},
			},
			{
				Name:  "floor",
				Usage: "serve one constant cache-hit answer from bare epoll loops: the least a server can do per hit (Linux)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "IPv4 address; port 0 picks one and prints it"},
					&cli.IntFlag{Name: "size", Value: 4096, Usage: "answer body bytes (the origin's pattern)"},
					&cli.IntFlag{Name: "workers", Value: runtime.GOMAXPROCS(0), Usage: "epoll loops (SO_REUSEPORT sockets)"},
					&cli.StringFlag{Name: "cache-control", Value: "public, max-age=60", Usage: "Cache-Control of the answer (empty: none)"},
				},
				Action: func(c *cli.Context) error {
					return runFloor(c.Context, c.String("listen"), c.Int("size"), c.Int("workers"), c.String("cache-control"))
				},
			},
			{
				Name:  "load",
				Usage: "load one address, closed loop (--conns) or open loop (--rate)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "addr", Required: true, Usage: "host:port"},
					&cli.StringFlag{Name: "method", Value: "GET"},
					&cli.StringFlag{Name: "path", Value: "/"},
					&cli.IntFlag{Name: "body-size", Usage: "request body bytes"},
					&cli.IntFlag{Name: "expect-status", Value: 200},
					&cli.IntFlag{Name: "expect-size", Value: -1, Usage: "expected response body bytes of the origin pattern; -1: no check"},
					&cli.IntFlag{Name: "conns", Value: 32, Usage: "connections (open loop: maximum in flight)"},
					&cli.DurationFlag{Name: "duration", Value: 10 * time.Second},
					&cli.Float64Flag{Name: "rate", Usage: "requests/s; > 0 selects the open loop"},
					&cli.Int64Flag{Name: "max-requests", Usage: "bound on requests started; 0: from duration"},
					&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "per request"},
					&cli.StringFlag{Name: "load", Value: "go", Usage: "go (the built-in client) or wrk (closed-loop GETs without bodies; no body check)"},
				},
				Action: func(c *cli.Context) error {
					tool, err := loadTool(c.String("load"))
					if err != nil {
						return err
					}
					res, err := RunLoad(c.Context, LoadConfig{
						Tool:  tool,
						Label: c.String("addr"), Addr: c.String("addr"), Method: c.String("method"),
						Path: c.String("path"), BodySize: c.Int("body-size"),
						ExpectStatus: c.Int("expect-status"), ExpectBodySize: c.Int("expect-size"),
						Conns: c.Int("conns"), Duration: c.Duration("duration"), Rate: c.Float64("rate"),
						MaxRequests: c.Int64("max-requests"), Timeout: c.Duration("timeout"), Progress: os.Stderr,
					})
					if res != nil {
						writeLoadResult(os.Stdout, res)
					}
					return err
				},
			},
			{
				Name:  "run",
				Usage: "measure vkp and each installed peer on each scenario; print a Markdown table",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "scenarios", Value: defaultScenarios, Usage: "comma-separated, name[:open|:closed]; known: " + scenarioNames()},
					&cli.StringFlag{Name: "peers", Value: "nginx,haproxy", Usage: "comma-separated peers (nginx, haproxy, traefik, floor: the least a server can do per cache hit); empty for vkp alone"},
					&cli.StringFlag{Name: "vkp", Usage: "vkp binary (default: go build from the module root)"},
					&cli.StringFlag{Name: "baseline", Usage: "another vkp binary, measured as peer vkp-base right after vkp in each round (before/after a change)"},
					&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "measured time per scenario × proxy"},
					&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "unmeasured load before each measurement"},
					&cli.IntFlag{Name: "conns", Value: 32, Usage: "closed-loop connections"},
					&cli.StringFlag{Name: "mode", Usage: "closed or open: force every scenario's loop (default: per scenario)"},
					&cli.Float64Flag{Name: "rate", Value: 500, Usage: "open-loop requests/s"},
					&cli.IntFlag{Name: "open-conns", Value: 256, Usage: "open-loop maximum requests in flight"},
					&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "per request"},
					&cli.IntFlag{Name: "workers", Value: runtime.NumCPU(), Usage: "nginx worker_processes and HAProxy nbthread (vkp: GOMAXPROCS); with --pin, the proxy's CPUs unless given"},
					&cli.BoolFlag{Name: "pin", Usage: "Linux: run each proxy on the first half of the CPUs and the load generator and origins on the rest, so that the client's CPU is not taken from the proxy (as with clients on other machines)"},
					&cli.StringFlag{Name: "load", Value: "go", Usage: "what drives closed-loop GETs without bodies: go (the built-in client, which checks every body), wrk (`wrk -t1`) or auto (wrk when installed); the rest always uses the built-in client"},
					&cli.IntFlag{Name: "rounds", Value: 1, Usage: "measure each scenario this many times, proxies alternating (vkp, peer, vkp, peer, ...); with 2 or more a table of medians follows"},
					&cli.StringFlag{Name: "out", Usage: "also write the report to this file"},
				},
				Action: runCommand,
			},
		},
	}
}

func runCommand(c *cli.Context) error {
	scs, err := parseScenarios(c.String("scenarios"), c.String("mode"))
	if err != nil {
		return err
	}
	var peers []string
	for _, p := range strings.Split(c.String("peers"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	tool, err := loadTool(c.String("load"))
	if err != nil {
		return err
	}
	cfg := RunConfig{
		Load:      tool,
		Scenarios: scs, Peers: peers, VKP: c.String("vkp"), Baseline: c.String("baseline"),
		Duration: c.Duration("duration"), Warmup: c.Duration("warmup"),
		Conns: c.Int("conns"), Rate: c.Float64("rate"), OpenConns: c.Int("open-conns"),
		Timeout: c.Duration("timeout"), Workers: c.Int("workers"), Rounds: c.Int("rounds"), Log: os.Stderr,
	}
	if c.Bool("pin") {
		if cfg.ProxyCPUs, cfg.RestCPUs, err = cpuSplit(); err != nil {
			return err
		}
		if err := pinSelf(cfg.RestCPUs); err != nil {
			return err
		}
		if !c.IsSet("workers") {
			cfg.Workers = len(cfg.ProxyCPUs)
		}
	}
	rateLabel, roundsLabel = cfg.Rate, cfg.Rounds
	tmp, err := os.MkdirTemp("", "vkp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	cells, notes, err := Run(c.Context, cfg, tmp)
	killAll()
	if err != nil {
		return err
	}

	var out strings.Builder
	writeHeader(&out, cfg, start)
	writeTable(&out, cells)
	writeNotes(&out, cells, notes)
	if cfg.Rounds > 1 {
		writeMedians(&out, cells)
	}
	fmt.Print(out.String())
	if path := c.String("out"); path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			return err
		}
	}
	var bad []string
	for i := range cells {
		if strings.HasPrefix(cells[i].Status, "failed") || cells[i].failed() {
			bad = append(bad, cells[i].label()+"/"+cells[i].Proxy)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("bench: errors in %s", strings.Join(bad, ", "))
	}
	return nil
}

// writeHeader records what produced the table: command, machine, versions.
func writeHeader(w io.Writer, cfg RunConfig, start time.Time) {
	fmt.Fprintf(w, "`go run ./bench %s`\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(w, "%s, %s, %d CPUs, %s; vkp %s; %s; %s",
		start.UTC().Format("2006-01-02 15:04 UTC"), cpuModel(), runtime.NumCPU(), runtime.Version(),
		gitDescribe(), toolVersion("nginx", "-v"), toolVersion("haproxy", "-v"))
	if slices.Contains(cfg.Peers, "traefik") {
		// `traefik version` prints "Version:      3.6.12" first.
		fmt.Fprintf(w, "; traefik %s", strings.Join(strings.Fields(toolVersion("traefik", "version")), " "))
	}
	fmt.Fprint(w, ". ")
	if cfg.ProxyCPUs != nil {
		fmt.Fprintf(w, "Pinned: each proxy on CPU %s, the load generator and the origins on CPU %s. ", cpuList(cfg.ProxyCPUs), cpuList(cfg.RestCPUs))
	}
	if cfg.Load == toolWrk {
		fmt.Fprintf(w, "Closed-loop GETs driven by %s (`wrk -t1`), the rest by the built-in client. ", toolVersion("wrk", "-v"))
	}
	fmt.Fprintf(w, "Closed loop: %d connections; open loop: %g req/s, up to %d in flight; %s measured after %s warm-up per cell; %d workers per proxy; took %s.\n\n",
		cfg.Conns, cfg.Rate, cfg.OpenConns, cfg.Duration, cfg.Warmup, cfg.Workers, time.Since(start).Round(time.Second))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(no git)"
	}
	return strings.TrimSpace(string(out))
}

// toolVersion returns the first line of `name flag` (nginx prints to stderr).
func toolVersion(name, flag string) string {
	out, err := exec.Command(name, flag).CombinedOutput()
	var ee *exec.Error
	if errors.As(err, &ee) {
		return name + " not installed"
	}
	return firstLine(string(out))
}
