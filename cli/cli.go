package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/vkp-proxy/vkp/engine"
	"github.com/vkp-proxy/vkp/store"
)

// Named exit codes; see doc.go.
const (
	ExitOK        = 0
	ExitRuntime   = 1
	ExitUsage     = 2
	ExitBadConfig = 3
)

// Version is set at build time with -ldflags "-X github.com/vkp-proxy/vkp/cli.Version=...".
var Version = "dev"

// Run executes the command line and returns the process exit code.
func Run(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

// run is Run with its outputs.
func run(args []string, stdout, stderr io.Writer) int {
	code := ExitOK
	app := &ucli.App{
		Name:      "vkp",
		Usage:     "a reverse proxy that mirrors production traffic to a shadow service",
		UsageText: "vkp serve --config vkp.json   (or: vkp proxy -c vkp.json, as VKProxy's CLI)\n   vkp validate --config vkp.json\n   vkp version | vkp --version",
		Writer:    stdout,
		ErrWriter: stderr,
		Version:   Version,
		Description: "vkp reads VKProxy-format JSON (ReverseProxy.Routes / ReverseProxy.Clusters).\n" +
			"Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid config.",
		Commands: []*ucli.Command{
			serveCommand(&code),
			validateCommand(&code),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *ucli.Context) error {
					ucli.VersionPrinter(c)
					return nil
				},
			},
		},
		ExitErrHandler: func(*ucli.Context, error) {},
		CommandNotFound: func(c *ucli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "vkp: unknown command %q; the commands are serve (alias proxy), validate and version; see vkp --help\n", name)
			code = ExitUsage
		},
	}
	ucli.VersionPrinter = func(c *ucli.Context) {
		fmt.Fprintf(c.App.Writer, "vkp %s (%s, fasthttp v1.74.0)\n", Version, runtime.Version())
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "vkp: %v\n", err)
		if code == ExitOK {
			code = ExitUsage
		}
	}
	return code
}

var configFlag = &ucli.StringFlag{
	Name:     "config",
	Aliases:  []string{"c"},
	Usage:    "path of the JSON config (VKProxy format)",
	EnvVars:  []string{"VKP_CONFIG"},
	Required: true,
}

func validateCommand(code *int) *ucli.Command {
	return &ucli.Command{
		Name:      "validate",
		Usage:     "check a config exactly as serve would load it, and print every problem",
		UsageText: "vkp validate --config vkp.json",
		Flags:     []ucli.Flag{configFlag},
		Action: func(c *ucli.Context) error {
			cfg, err := loadConfig(c.String("config"), c.App.ErrWriter)
			if err != nil {
				*code = ExitBadConfig
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s: ok (%s, %s, %s)\n", c.String("config"),
				plural(len(cfg.Routes), "route"), plural(len(cfg.Clusters), "cluster"), plural(len(cfg.Warnings), "warning"))
			return nil
		},
	}
}

// loadConfig is the one load path of serve and validate. Warnings go to w.
func loadConfig(path string, w io.Writer) (*engine.Config, error) {
	cfg, err := engine.LoadConfig(path)
	var ce *engine.ConfigError
	if errors.As(err, &ce) {
		for _, warn := range ce.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
		for _, p := range ce.Problems {
			fmt.Fprintf(w, "error: %s\n", p)
		}
		return nil, fmt.Errorf("%s: invalid config (%s)", path, plural(len(ce.Problems), "problem"))
	}
	if err != nil {
		return nil, err
	}
	for _, warn := range cfg.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return cfg, nil
}

func serveCommand(code *int) *ucli.Command {
	return &ucli.Command{
		Name:      "serve",
		Aliases:   []string{"proxy"},
		Usage:     "run the proxy",
		UsageText: "vkp serve --config vkp.json [--listen 127.0.0.1:8080]",
		Flags: []ucli.Flag{
			configFlag,
			&ucli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, EnvVars: []string{"VKP_LISTEN"},
				Usage: "address to listen on, replacing the config's Listen section (repeatable; default " + engine.DefaultListenAddress + " when the config has none)"},
			&ucli.BoolFlag{Name: "reuse-port", EnvVars: []string{"VKP_REUSE_PORT"},
				Usage: "listen with SO_REUSEPORT (Linux): several vkp processes share the addresses, the kernel spreading connections among them (one per core with GOMAXPROCS=1, or an old and a new binary during an upgrade); each keeps its own budgets and cache"},
			&ucli.StringFlag{Name: "max-request-body", EnvVars: []string{"VKP_MAX_REQUEST_BODY"}, Value: "64MiB",
				Usage: "largest request body accepted; bigger ones get 413 (bytes, or with KiB/MiB/GiB)"},
			&ucli.DurationFlag{Name: "grace", EnvVars: []string{"VKP_GRACE"}, Value: 30 * time.Second,
				Usage: "on SIGTERM/SIGINT, how long in-flight requests may take to finish"},
			&ucli.StringFlag{Name: "log-level", EnvVars: []string{"VKP_LOG_LEVEL"}, Value: "info",
				Usage: "debug, info, warn or error"},
			&ucli.StringFlag{Name: "log-format", EnvVars: []string{"VKP_LOG_FORMAT"}, Value: "json",
				Usage: "json or text (logs go to stderr)"},
			&ucli.BoolFlag{Name: "access-log", EnvVars: []string{"VKP_ACCESS_LOG"}, Value: true,
				Usage: "one log line per request (category Vkp.Access); --access-log=false turns it off"},
			&ucli.StringFlag{Name: "sampler", EnvVars: []string{"VKP_SAMPLER", "VKPROXY_SAMPLER"}, Value: "none",
				Usage: "log sampling: none, random (the config's RandomProbabilisticSampler.Rules) or trace (a request's lines only when its W3C traceparent is sampled; traceparent goes upstream)"},
			&ucli.StringFlag{Name: "admin", EnvVars: []string{"VKP_ADMIN"},
				Usage: "address of the admin listener (/metrics, /healthz, /readyz), e.g. 127.0.0.1:9901; off when not given"},
			&ucli.IntFlag{Name: "mirror-inflight", EnvVars: []string{"VKP_MIRROR_INFLIGHT"}, Value: engine.DefaultMirrorInflight,
				Usage: "most mirror copies being sent at once (size it to mirrored req/s × shadow latency)"},
			&ucli.IntFlag{Name: "mirror-queue", EnvVars: []string{"VKP_MIRROR_QUEUE"}, Value: engine.DefaultMirrorQueue,
				Usage: "most mirror copies waiting for a sender; beyond it copies are dropped and counted"},
			&ucli.StringFlag{Name: "mirror-memory", EnvVars: []string{"VKP_MIRROR_MEMORY"}, Value: "256MiB",
				Usage: "most memory held by mirror copies once the main response is out (bodies until written, + 48 KiB per copy until answered); beyond it copies are dropped"},
			&ucli.StringFlag{Name: "body-memory", EnvVars: []string{"VKP_BODY_MEMORY"}, Value: "256MiB",
				Usage: "most memory held by request bodies being served whole (mirrored routes, Statements on Form); beyond it bodies stream and their mirror copies are dropped"},
			&ucli.StringFlag{Name: "body-buffer", EnvVars: []string{"VKP_BODY_BUFFER"}, Value: "1MiB",
				Usage: "request bodies up to this size are read whole before they are forwarded (within --body-memory); larger ones stream as they arrive; 0 streams every body no stage needs whole"},
			&ucli.BoolFlag{Name: "watch", EnvVars: []string{"VKP_WATCH"}, Value: true,
				Usage: "reload the config when its file changes (SIGHUP always reloads); --watch=false turns watching off"},
			&ucli.DurationFlag{Name: "header-timeout", EnvVars: []string{"VKP_HEADER_TIMEOUT"}, Value: engine.DefaultHeaderTimeout,
				Usage: "a request header not complete this long after the connection opened (or its first byte, on keep-alive) gets 408 and the connection is closed"},
			&ucli.DurationFlag{Name: "body-timeout", EnvVars: []string{"VKP_BODY_TIMEOUT"}, Value: engine.DefaultBodyTimeout,
				Usage: "longest wait for more of a request body"},
			&ucli.DurationFlag{Name: "idle-timeout", EnvVars: []string{"VKP_IDLE_TIMEOUT"}, Value: engine.DefaultIdleTimeout,
				Usage: "how long a keep-alive client connection may wait for its next request"},
			&ucli.DurationFlag{Name: "write-timeout", EnvVars: []string{"VKP_WRITE_TIMEOUT"}, Value: engine.DefaultWriteTimeout,
				Usage: "longest wait for a client to take a buffered response, or each part of a streamed one"},
			&ucli.StringFlag{Name: "memory-cache-max", EnvVars: []string{"VKP_MEMORY_CACHE_MAX", "VKPROXY_MEMORY_CACHE_MAX"}, Value: "256MiB",
				Usage: "size of the memory cache store (Cache: Memory); it holds entries up to an eighth of it"},
			&ucli.StringFlag{Name: "disk-cache", EnvVars: []string{"VKP_DISK_CACHE", "VKPROXY_DISK_CACHE"}, Value: "./cache",
				Usage: "directory of the disk cache store (Cache: Disk), created when a route uses it; entries survive a restart"},
			&ucli.StringFlag{Name: "disk-cache-max", EnvVars: []string{"VKP_DISK_CACHE_MAX", "VKPROXY_DISK_CACHE_MAX"}, Value: "1GiB",
				Usage: "size of the disk cache store; the least recently used entries go first"},
			&ucli.StringFlag{Name: "redis", EnvVars: []string{"VKP_REDIS", "VKPROXY_REDIS"},
				Usage: "Redis for the Redis cache store (Cache: Redis): host:port or redis://[user:password@]host:port[/db]"},
			&ucli.StringFlag{Name: "redis-prefix", EnvVars: []string{"VKP_REDIS_PREFIX"}, Value: store.DefaultRedisPrefix,
				Usage: "prefix of vkp's keys in Redis"},
			&ucli.DurationFlag{Name: "redis-timeout", EnvVars: []string{"VKP_REDIS_TIMEOUT"}, Value: store.DefaultRedisTimeout,
				Usage: "bound of each Redis call; a lookup that takes longer is a miss"},
		},
		Action: func(c *ucli.Context) error {
			err := serve(c)
			if err != nil && *code == ExitOK {
				*code = ExitRuntime
			}
			if errors.Is(err, errBadConfig) {
				*code = ExitBadConfig
			}
			if errors.Is(err, errUsage) {
				*code = ExitUsage
			}
			return err
		},
	}
}

// cacheStores reads the cache store flags into the engine's store openers:
// a store is opened only when a route uses it.
func cacheStores(c *ucli.Context) (map[string]func() (store.Store, error), error) {
	memMax, err := engine.ParseSize(c.String("memory-cache-max"))
	if err != nil || memMax < 1<<20 {
		return nil, fmt.Errorf("%w: --memory-cache-max %q: want a size of at least 1MiB, like 256MiB", errUsage, c.String("memory-cache-max"))
	}
	diskMax, err := engine.ParseSize(c.String("disk-cache-max"))
	if err != nil || diskMax <= 0 {
		return nil, fmt.Errorf("%w: --disk-cache-max %q: want a positive size like 1GiB", errUsage, c.String("disk-cache-max"))
	}
	dir := c.String("disk-cache")
	if dir == "" {
		return nil, fmt.Errorf("%w: --disk-cache must name a directory", errUsage)
	}
	if c.Duration("redis-timeout") <= 0 {
		return nil, fmt.Errorf("%w: --redis-timeout must be positive", errUsage)
	}
	stores := map[string]func() (store.Store, error){
		"memory": func() (store.Store, error) {
			return store.NewMemory(store.MemoryOptions{MaxBytes: int64(memMax), MaxEntry: int64(memMax) / 8})
		},
		"disk": func() (store.Store, error) {
			return store.NewDisk(store.DiskOptions{Dir: dir, MaxBytes: int64(diskMax)})
		},
	}
	if addr := c.String("redis"); addr != "" {
		addr, err := redisAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: --redis: %v", errUsage, err)
		}
		prefix, timeout := c.String("redis-prefix"), c.Duration("redis-timeout")
		stores["redis"] = func() (store.Store, error) {
			return store.NewRedis(store.RedisOptions{Addr: addr, Prefix: prefix, Timeout: timeout})
		}
	}
	return stores, nil
}

// redisAddr takes --redis as vkp's store does (host:port, or a redis://
// or rediss:// URL) or as VKProxy's did, a StackExchange.Redis connection
// string ("host:port,password=p,ssl=true,defaultDatabase=2"; options
// other than user, password, ssl and defaultDatabase are ignored, and of
// several endpoints the first is used).
func redisAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") || !strings.ContainsAny(s, ",=") {
		return s, nil
	}
	u := url.URL{Scheme: "redis"}
	var user, pass string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		k, v, isOpt := strings.Cut(part, "=")
		switch {
		case part == "":
		case !isOpt:
			if u.Host == "" {
				u.Host = part
			}
		case strings.EqualFold(k, "password"):
			pass = v
		case strings.EqualFold(k, "user"):
			user = v
		case strings.EqualFold(k, "ssl"):
			if strings.EqualFold(v, "true") {
				u.Scheme = "rediss"
			}
		case strings.EqualFold(k, "defaultDatabase"):
			if _, err := strconv.Atoi(v); err != nil {
				return "", fmt.Errorf("defaultDatabase %q is not a number", v)
			}
			u.Path = "/" + v
		}
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q names no host:port", s)
	}
	if pass != "" || user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String(), nil
}

var (
	errBadConfig = errors.New("invalid config")
	errUsage     = errors.New("usage")
)

func serve(c *ucli.Context) error {
	// Signals are taken from the start: a SIGHUP that came before the
	// reloader existed would otherwise end the process (its default).
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigc)
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, c.String("log-level"))
	}
	// The config's Logging.LogLevel.Default sets the level when
	// --log-level is not given (read once the config is).
	var levelVar slog.LevelVar
	levelVar.Set(level)
	hopts := &slog.HandlerOptions{Level: &levelVar}
	var h slog.Handler
	switch strings.ToLower(c.String("log-format")) {
	case "json":
		h = slog.NewJSONHandler(c.App.ErrWriter, hopts)
	case "text":
		h = slog.NewTextHandler(c.App.ErrWriter, hopts)
	default:
		return fmt.Errorf("%w: --log-format %q: want json or text", errUsage, c.String("log-format"))
	}
	mode, ok := map[string]int{"none": engine.SampleNone, "random": engine.SampleRandom, "trace": engine.SampleTrace}[strings.ToLower(c.String("sampler"))]
	if !ok {
		return fmt.Errorf("%w: --sampler %q: want none, random or trace", errUsage, c.String("sampler"))
	}
	sampler := engine.NewSampler(mode)
	root := slog.New(engine.NewSamplingHandler(h, sampler))
	log := root.With("category", engine.CatServer)
	maxBody, err := engine.ParseSize(c.String("max-request-body"))
	if err != nil {
		return fmt.Errorf("%w: --max-request-body: %v", errUsage, err)
	}
	mirrorMem, err := engine.ParseSize(c.String("mirror-memory"))
	if err != nil || mirrorMem <= 0 {
		return fmt.Errorf("%w: --mirror-memory %q: want a positive size like 256MiB", errUsage, c.String("mirror-memory"))
	}
	if c.Int("mirror-inflight") <= 0 || c.Int("mirror-queue") <= 0 {
		return fmt.Errorf("%w: --mirror-inflight and --mirror-queue must be positive", errUsage)
	}
	bodyMem, err := engine.ParseSize(c.String("body-memory"))
	if err != nil || bodyMem <= 0 {
		return fmt.Errorf("%w: --body-memory %q: want a positive size like 256MiB", errUsage, c.String("body-memory"))
	}
	bodyBuf, err := engine.ParseSize(c.String("body-buffer"))
	if err != nil {
		return fmt.Errorf("%w: --body-buffer %q: want a size like 1MiB", errUsage, c.String("body-buffer"))
	}
	if bodyBuf == 0 {
		bodyBuf = -1 // engine: negative streams every body
	}
	for _, f := range []string{"header-timeout", "body-timeout", "idle-timeout", "write-timeout"} {
		if c.Duration(f) <= 0 {
			return fmt.Errorf("%w: --%s must be positive", errUsage, f)
		}
	}
	stores, err := cacheStores(c)
	if err != nil {
		return err
	}
	// The reloader's baseline is the file before it is read, so a change
	// written while vkp starts is applied once the watcher runs.
	reloader := engine.NewReloader(c.String("config"))
	cfg, err := loadConfig(c.String("config"), c.App.ErrWriter)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadConfig, err)
	}
	if cfg.HasLogLevel && !c.IsSet("log-level") {
		levelVar.Set(cfg.LogLevel)
	}
	eng, err := engine.New(cfg, engine.Options{
		CacheStores: stores, AccessLog: c.Bool("access-log"), Sampler: sampler,
		MaxRequestBodySize: maxBody, Logger: root,
		MirrorInflight: c.Int("mirror-inflight"), MirrorQueue: c.Int("mirror-queue"), MirrorMemory: int64(mirrorMem),
		BodyMemory: int64(bodyMem), BodyBuffer: bodyBuf, HeaderTimeout: c.Duration("header-timeout"), BodyTimeout: c.Duration("body-timeout"),
		IdleTimeout: c.Duration("idle-timeout"), WriteTimeout: c.Duration("write-timeout"),
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errBadConfig, err)
	}

	addrs := c.StringSlice("listen")
	if len(addrs) == 0 {
		for _, l := range cfg.Listen {
			addrs = append(addrs, l.Addresses...)
		}
	}
	if len(addrs) == 0 {
		addrs = []string{engine.DefaultListenAddress}
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	lc := net.ListenConfig{}
	if c.Bool("reuse-port") {
		if reusePort == nil {
			return fmt.Errorf("%w: --reuse-port: not supported on this system", errUsage)
		}
		lc.Control = reusePort
	}
	for _, a := range addrs {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", a, err)
		}
		lns = append(lns, ln)
	}

	var ready atomic.Bool
	var admin *fasthttp.Server
	if a := c.String("admin"); a != "" {
		// With --reuse-port the admin address is shared too, so that the
		// next binary can start next to this one; it still never shares
		// the proxy's own address.
		aln, err := lc.Listen(context.Background(), "tcp", a)
		if err == nil {
			for _, ln := range lns {
				if sameBind(ln.Addr(), aln.Addr()) {
					aln.Close()
					err = errors.New("it is a proxy address")
				}
			}
		}
		if err != nil {
			closeAll()
			return fmt.Errorf("%w: --admin %s: %v (the admin listener never shares the proxy's address)", errUsage, a, err)
		}
		admin = adminServer(eng, &ready)
		go admin.Serve(aln) //nolint:errcheck // ends at Shutdown
		log.Info("admin listening", "address", aln.Addr().String())
	}

	srv := eng.NewServer()
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			if err := srv.Serve(engine.Listener(ln)); err != nil {
				errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		}(ln)
		log.Info("listening", "address", ln.Addr().String(), "routes", len(cfg.Routes), "clusters", len(cfg.Clusters), "version", Version)
	}

	ready.Store(true)

	// Reloads: on SIGHUP (systemd's reload, logrotate), and when the file
	// changes unless --watch=false.
	reloader.Attach(eng, root.With("category", engine.CatConfig))
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if c.Bool("watch") {
		go func() {
			if err := reloader.Watch(watchCtx); err != nil {
				log.Error("config watch failed; SIGHUP still reloads", "error", err.Error())
			}
		}()
	}
	var runErr error
wait:
	for {
		select {
		case sig := <-sigc:
			if sig == syscall.SIGHUP {
				reloader.Reload("SIGHUP", true)
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "grace", c.Duration("grace").String())
			break wait
		case runErr = <-errc:
			log.Error("server failed", "error", runErr.Error())
			break wait
		}
	}
	stopWatch()
	ready.Store(false) // probes see the drain at once
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("grace"))
	defer cancel()
	start := time.Now()
	if err := srv.ShutdownWithContext(ctx); err != nil {
		log.Warn("grace period over; closing remaining connections", "open_connections", srv.GetOpenConnectionsCount(), "error", err.Error())
	}
	wg.Wait()
	eng.Close(ctx)
	if admin != nil {
		admin.Shutdown() //nolint:errcheck // shutting down
	}
	log.Info("stopped", "drain", time.Since(start).Round(time.Millisecond).String())
	return runErr
}

// adminServer serves /metrics (Prometheus text format), /healthz (the
// process answers) and /readyz (the config is loaded and the proxy
// listens; 503 while it starts and once it drains).
func adminServer(eng *engine.Engine, ready *atomic.Bool) *fasthttp.Server {
	return &fasthttp.Server{
		Name:                  "",
		NoDefaultServerHeader: true,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          time.Minute, // a profile takes its ?seconds= first
		Handler: func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/metrics":
				ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
				eng.WriteMetrics(ctx)
			case "/healthz":
				ctx.SetBodyString("ok\n")
			case "/readyz":
				if !ready.Load() {
					ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
					ctx.SetBodyString("not ready\n")
					return
				}
				ctx.SetBodyString("ready\n")
			default:
				if strings.HasPrefix(string(ctx.Path()), "/debug/pprof") {
					// Go's profiles and execution trace, for finding where
					// the time goes in a running vkp.
					pprofhandler.PprofHandler(ctx)
					return
				}
				ctx.SetStatusCode(fasthttp.StatusNotFound)
				ctx.SetBodyString("/metrics, /healthz, /readyz, /debug/pprof\n")
			}
		},
	}
}

// plural writes "1 problem", "2 problems".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// sameBind reports whether two TCP listeners take the same connections: one
// port, and one address or either the wildcard.
func sameBind(a, b net.Addr) bool {
	ta, ok1 := a.(*net.TCPAddr)
	tb, ok2 := b.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return a.String() == b.String()
	}
	return ta.Port == tb.Port && (ta.IP.Equal(tb.IP) || ta.IP.IsUnspecified() || tb.IP.IsUnspecified())
}
