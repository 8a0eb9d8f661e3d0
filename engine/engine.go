package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/vkp-proxy/vkp/store"
)

// Options are process-wide settings that do not come from the config file.
type Options struct {
	// MaxRequestBodySize bounds request bodies; larger ones get 413.
	// Default 64 MiB.
	MaxRequestBodySize int
	// Logger receives request failures and lifecycle events. Default: discard.
	Logger *slog.Logger
	// Rand replaces the random source of the load balancers (tests).
	Rand IntN
	// Dial replaces the upstream dialer (tests use in-memory listeners).
	Dial fasthttp.DialFunc
	// MirrorInflight bounds mirror copies being sent at once.
	// Default DefaultMirrorInflight.
	MirrorInflight int
	// MirrorQueue bounds mirror copies waiting for a sender.
	// Default DefaultMirrorQueue.
	MirrorQueue int
	// MirrorMemory bounds the body bytes of queued and in-flight mirror
	// copies. Default DefaultMirrorMemory.
	MirrorMemory int64
	// BodyMemory bounds the request body bytes held in memory by requests
	// being served (bodies a stage needs whole: mirroring, a Statement on
	// Form fields). Other bodies are streamed and hold nothing. Default
	// DefaultBodyMemory.
	BodyMemory int64
	// HeaderTimeout bounds the wait for a request's whole header, from the
	// connection's accept or its first byte (keep-alive); past it the client
	// gets 408 and the connection is closed. Default DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// BodyTimeout bounds each wait for more of a request body. Default
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing a buffered response, and each write of a
	// streamed one, to a client that does not read. Default
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// BodyBuffer is the largest request body read whole before it is
	// forwarded, when BodyMemory allows; larger ones stream. Default
	// DefaultBodyBuffer; negative: stream every body no stage needs.
	BodyBuffer int
	// Clock replaces the monotonic clock (nanoseconds) of the mirror's
	// breakers (tests). Default monoNow.
	Clock func() int64
	// UserAgent is what active health checks send. Default "vkp-health".
	UserAgent string
	// CacheStores open the response cache's stores by kind ("memory",
	// "disk", "redis"), the first time a route names one (Metadata.Cache);
	// the engine closes them in Close. A kind missing here is a config
	// error for the routes that use it, except "memory", which defaults to
	// store.NewMemory with its default limits.
	CacheStores map[string]func() (store.Store, error)
	// CacheFillMemory bounds the bytes of streamed response bodies being
	// captured for the cache at once: each capture is charged for the
	// buffer it holds, which grows as the body arrives. Past it, captures
	// are dropped (the responses go on, uncached). Default
	// DefaultCacheFillMemory.
	CacheFillMemory int64
	// Now replaces the wall clock of the cache's age and freshness
	// computations (tests). Default time.Now.
	Now func() time.Time
	// AccessLog writes one line per request (category Vkp.Access) to
	// Logger. Default off; serve turns it on (--access-log).
	AccessLog bool
	// Sampler decides which log lines are written (--sampler). nil: all.
	// Its rules come from the config (RandomProbabilisticSampler.Rules).
	Sampler *Sampler
}

// DefaultCacheFillMemory is Options.CacheFillMemory's default.
const DefaultCacheFillMemory = 256 << 20

// Defaults of Options' limits and timeouts (README, "Limits and timeouts").
const (
	DefaultBodyMemory    = 256 << 20
	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = 60 * time.Second
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultWriteTimeout  = 60 * time.Second
	// DefaultBodyBuffer: a 1 MiB body sent in one write costs the proxy
	// less CPU than the same body streamed as it arrives (BENCHMARKS.md,
	// post-1mib); 64 such uploads at once hold 64 MiB, within the default
	// BodyMemory.
	DefaultBodyBuffer = 1 << 20
)

// DefaultMaxRequestBodySize is the request body limit when Options leaves it 0.
const DefaultMaxRequestBodySize = 64 << 20

// Engine is the proxy: it owns the current Snapshot and the upstream
// connection pools, and serves requests through Handle.
type Engine struct {
	opts    Options
	log     *slog.Logger
	current atomic.Pointer[Snapshot]

	applyMu  sync.Mutex          // one Apply at a time; guards checkers
	reg      *registry           // pools and per-address state, shared across snapshots
	checkers map[string]*checker // active health checks, by lower-cased cluster id

	mirror  *mirrorer
	bodyMem atomic.Int64 // request body bytes held (Options.BodyMemory)
	stop    chan struct{}
	stopped sync.WaitGroup

	access  *slog.Logger // the access log; nil: off
	metrics *engineMetrics
	served  atomic.Int64 // requests being served (vkp_requests_in_flight)

	// The response cache (cache.go, cache_fill.go).
	fills        fills
	writer       *storeWriter
	cacheFillMem atomic.Int64 // streamed bodies being captured (Options.CacheFillMemory)
	bgRefresh    atomic.Int64 // stale-while-revalidate refreshes in flight
	bgWG         sync.WaitGroup
}

// Snapshot is one immutable, compiled configuration. Requests Load() it once
// and use it to the end, so a reload never changes a request mid-flight.
type Snapshot struct {
	Config   *Config
	Router   *Router
	Routes   []*Route
	Clusters map[string]*Cluster // by lower-cased id
	// readsBody: some route's Statement looks at Form fields, so request
	// bodies are read before routing.
	readsBody bool
	// What the snapshot uses in the registry: retired when a snapshot
	// that does not use them replaces this one.
	pools       []*upstream
	hosts       []*hostState
	metricNames []string
}

// Route is a compiled route: its matcher parts and its handler chain.
type Route struct {
	ID      string
	cfg     *RouteConfig
	cluster *Cluster
	timeout time.Duration
	match   func(*fasthttp.RequestCtx) bool // Statement; nil accepts all
	handler handler
	stats   statusCounters
}

// fill sets the defaults of the options left zero.
func (opts *Options) fill() {
	if opts.MaxRequestBodySize <= 0 {
		opts.MaxRequestBodySize = DefaultMaxRequestBodySize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MirrorInflight <= 0 {
		opts.MirrorInflight = DefaultMirrorInflight
	}
	if opts.MirrorQueue <= 0 {
		opts.MirrorQueue = DefaultMirrorQueue
	}
	if opts.MirrorMemory <= 0 {
		opts.MirrorMemory = DefaultMirrorMemory
	}
	if opts.BodyMemory <= 0 {
		opts.BodyMemory = DefaultBodyMemory
	}
	switch {
	case opts.BodyBuffer == 0:
		opts.BodyBuffer = DefaultBodyBuffer
	case opts.BodyBuffer < 0:
		opts.BodyBuffer = 0
	}
	for _, t := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&opts.HeaderTimeout, DefaultHeaderTimeout}, {&opts.BodyTimeout, DefaultBodyTimeout},
		{&opts.IdleTimeout, DefaultIdleTimeout}, {&opts.WriteTimeout, DefaultWriteTimeout}} {
		if *t.v <= 0 {
			*t.v = t.def
		}
	}
	if opts.Clock == nil {
		opts.Clock = monoNow
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "vkp-health"
	}
	if opts.CacheFillMemory <= 0 {
		opts.CacheFillMemory = DefaultCacheFillMemory
	}
}

// wallNow is the wall clock of the cache (unix ns).
func (e *Engine) wallNow() int64 {
	if e.opts.Now != nil {
		return e.opts.Now().UnixNano()
	}
	return time.Now().UnixNano()
}

// cacheNow is the time a request is looked up at: when it arrived.
func (e *Engine) cacheNow(ctx *fasthttp.RequestCtx) int64 {
	if e.opts.Now != nil {
		return e.opts.Now().UnixNano()
	}
	return ctx.Time().UnixNano()
}

// New builds an engine serving cfg.
func New(cfg *Config, opts Options) (*Engine, error) {
	opts.fill()
	e := &Engine{opts: opts, log: opts.Logger.With("category", CatProxy), stop: make(chan struct{})}
	if opts.AccessLog {
		e.access = opts.Logger.With("category", CatAccess)
	}
	e.metrics = newEngineMetrics()
	e.reg = newRegistry(&e.opts)
	e.reg.stores = newCacheStores(e.opts.CacheStores)
	e.reg.metrics = e.metrics
	e.writer = newStoreWriter(opts.Logger.With("category", CatCache))
	e.mirror = newMirrorer(opts, opts.Logger.With("category", CatMirror))
	e.metrics.watchMirror(e.mirror)
	if err := e.Apply(cfg); err != nil {
		e.writer.close(context.Background())
		e.reg.stores.close()
		return nil, err
	}
	e.stopped.Add(1)
	go e.janitor()
	return e, nil
}

// janitor closes upstream connections idle for too long.
func (e *Engine) janitor() {
	defer e.stopped.Done()
	t := time.NewTicker(upstreamIdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			now := monoNow()
			e.reg.each(func(u *upstream) { u.sweep(now) })
		}
	}
}

// Current returns the snapshot serving new requests.
func (e *Engine) Current() *Snapshot { return e.current.Load() }

// Apply compiles cfg into a new snapshot and swaps it in. In-flight requests
// finish on the snapshot they started with; pools and per-address state
// only the old snapshot used are retired (registry.go). On error nothing
// changes and the error is a *ConfigError.
func (e *Engine) Apply(cfg *Config) error {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	s, _, err := compile(cfg, e.reg, &e.opts)
	if err != nil {
		e.reg.retire(s, e.current.Load()) // what this build alone registered
		return err
	}
	old := e.current.Swap(s)
	e.opts.Sampler.SetRules(cfg.LogRules)
	e.syncCheckers(s)
	e.reg.retire(old, s)
	return nil
}

// syncCheckers runs one active checker per cluster of s that has one: a
// checker whose cluster, settings and destinations are the same keeps
// running (no new probes, its streaks kept); the others are replaced or
// stopped. Called under applyMu.
func (e *Engine) syncCheckers(s *Snapshot) {
	if e.checkers == nil {
		e.checkers = map[string]*checker{}
	}
	keep := map[string]bool{}
	for key, cl := range s.Clusters {
		ac := cl.cfg.HealthCheck.Active
		if ac == nil {
			continue
		}
		k := newChecker(cl, ac, e.opts.Logger.With("category", CatHealth), e.opts.UserAgent)
		old := e.checkers[key]
		if old != nil && old.spec == k.spec {
			k.cancel()
			keep[key] = true
			continue
		}
		// The new one first: an address both check keeps its state.
		k.start()
		if old != nil {
			old.close()
		}
		e.checkers[key] = k
		keep[key] = true
	}
	for key, k := range e.checkers {
		if !keep[key] {
			k.close()
			delete(e.checkers, key)
		}
	}
}

// MirrorStats returns the mirror counters.
func (e *Engine) MirrorStats() MirrorStats { return e.mirror.Stats() }

// Close stops background work after the server has stopped taking requests:
// queued and in-flight mirror copies get until ctx ends to finish, the rest
// are dropped. It logs what happened, and closes idle upstream connections.
func (e *Engine) Close(ctx context.Context) {
	flushed, dropped, inflight := e.mirror.close(ctx)
	st := e.mirror.Stats()
	var mean time.Duration
	if st.LatencyN > 0 {
		mean = st.LatencySum / time.Duration(st.LatencyN)
	}
	e.mirror.log.Info("mirror stopped", "flushed", flushed, "dropped_at_shutdown", dropped, "of_them_in_flight", inflight,
		"due", st.Due, "sent", st.Sent, "failed", st.Failed, "dropped", st.Dropped, "dropped_down", st.DroppedDown, "dropped_body", st.DroppedBody, "skipped", st.Skipped,
		"body_bytes", st.BodyBytes, "latency_mean", mean, "latency_max", st.LatencyMax)
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.stopped.Wait()
	e.bgWG.Wait()
	e.writer.close(ctx)
	e.reg.stores.close()
	e.applyMu.Lock()
	for key, k := range e.checkers {
		k.close()
		delete(e.checkers, key)
	}
	e.applyMu.Unlock()
	e.reg.retire(e.current.Load(), nil)
}

// Handle serves one request: check what the client sent, match a route on
// the current snapshot and run its chain; then count it and write its
// access log line.
func (e *Engine) Handle(ctx *fasthttp.RequestCtx) {
	e.served.Add(1)
	sendKeptOf(ctx)
	x := e.acquireExchange(ctx)
	e.handle(x)
	e.account(x)
	x.release()
	armWriteBehind(ctx)
	e.served.Add(-1)
}

func (e *Engine) handle(x *exchange) {
	ctx := x.ctx
	if err := checkRequest(&ctx.Request.Header); err != nil {
		e.fail(x, err, nil)
		ctx.SetConnectionClose()
		return
	}
	x.startBody()
	if x.body.n > e.opts.MaxRequestBodySize {
		e.fail(x, fasthttp.ErrBodyTooLarge, nil)
		return
	}
	if ambiguousPath(ctx.Request.URI().PathOriginal()) {
		e.fail(x, ErrAmbiguousPath, nil)
		return
	}
	s := e.current.Load()
	if s.readsBody {
		if err := x.hold(e.opts.MaxRequestBodySize); err != nil {
			e.fail(x, err, nil)
			return
		}
	}
	r := s.Router.Match(ctx)
	if r == nil {
		e.fail(x, ErrNoRoute, nil)
		return
	}
	x.route = r
	if e.opts.Sampler.Mode() == SampleTrace {
		x.trace = traceUpstream(&ctx.Request.Header)
	}
	r.handler(x)
	if !x.body.whole() || x.closeClient {
		// The rest of the body is still on the connection: it must not be
		// read as the next request.
		x.closeLingering()
	}
}

// serverWriteBuffer is the server's write buffer: an answer up to this
// size leaves in one write (and can be kept by clientConn).
const serverWriteBuffer = 16 << 10

// NewServer returns a fasthttp server wired to the engine: body limit,
// timeouts, error mapping, request bodies streamed (read by the engine as
// it needs them), and response headers passed through as the upstream sent
// them.
func (e *Engine) NewServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      e.Handle,
		ErrorHandler:                 e.serverError,
		ExpectHandler:                e.expect,
		HeaderReceived:               e.headerReceived,
		Name:                         "",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true, // the upstream's Date passes (ensureDate adds one it lacks)
		MaxRequestBodySize:           e.opts.MaxRequestBodySize,
		StreamRequestBody:            true,
		ReadBufferSize:               16 << 10,
		WriteBufferSize:              serverWriteBuffer,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  e.opts.HeaderTimeout,
		IdleTimeout:                  e.opts.IdleTimeout,
		WriteTimeout:                 e.opts.WriteTimeout,
		CloseOnShutdown:              true,
		Logger:                       slogPrinter{e.log},
	}
}

// headerReceived gives a request with a body --body-timeout for the part
// the server reads before the handler (the header's own deadline would
// otherwise apply).
func (e *Engine) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if n := h.ContentLength(); n != 0 && n != -2 {
		return fasthttp.RequestConfig{ReadTimeout: e.opts.BodyTimeout}
	}
	return fasthttp.RequestConfig{}
}

// expect answers "Expect: 100-continue": a body announced over the limit is
// refused with 413 before the client sends it (clients such as curl send
// large uploads this way and would otherwise see a reset mid-upload).
func (e *Engine) expect(ctx *fasthttp.RequestCtx) int {
	if cl := ctx.Request.Header.ContentLength(); cl > e.opts.MaxRequestBodySize {
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

// slogPrinter adapts fasthttp's Printf logger to slog at debug level.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}
