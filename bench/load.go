package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Error kinds, as counted in LoadResult.Errors.
const (
	errConnect = "connect" // dial failed or refused
	errTimeout = "timeout" // no full response within LoadConfig.Timeout
	errStatus  = "status"  // status != LoadConfig.ExpectStatus
	errBody    = "body"    // response body differs from the origin's pattern
	errIO      = "io"      // any other transport error (reset, EOF, ...)
)

// LoadConfig describes one load run against one address.
type LoadConfig struct {
	Label    string // shown on progress lines
	Addr     string // host:port of the proxy (or origin)
	Method   string
	Path     string
	BodySize int // request body size; the body is a slice of one shared buffer

	ExpectStatus   int // default 200
	ExpectBodySize int // response body must be this many bytes of the pattern; <0 disables the check

	Conns       int           // closed loop: connections = workers; open loop: maximum in flight
	Duration    time.Duration // how long requests are started for
	MaxRequests int64         // upper bound on requests started; 0 derives one from Duration
	Rate        float64       // requests/s; > 0 selects the open loop
	Timeout     time.Duration // per request (write + full response read); default 10s

	// Stream reads each response body as a stream, checking its length
	// only, and records the time to the first byte (TTFB).
	Stream bool

	Progress io.Writer         // one line per second; nil for none
	Dial     fasthttp.DialFunc // nil for TCP; tests pass an in-memory listener's Dial

	// Tool is toolWrk to run the load with wrk where it can (wrkFits);
	// otherwise, and by default, the Go client below.
	Tool string
}

// LoadResult is the outcome of one load run.
type LoadResult struct {
	Tool      string // toolGo or toolWrk
	Mode      string // "closed" or "open"
	Elapsed   time.Duration
	Started   int64            // requests started
	OK        int64            // responses with the expected status and body
	Errors    map[string]int64 // by kind; absent kinds are zero
	BodySent  int64            // request body bytes of the OK requests
	BytesRecv int64            // response body bytes of the OK requests
	Latency   LatencySummary   // of OK requests; open loop: from the intended send time
	TTFB      LatencySummary   // Stream runs: time to the response header, of OK requests
}

// ErrorCount is the total over all kinds.
func (r *LoadResult) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// ErrorString renders "0" or "12 (status 10, timeout 2)".
func (r *LoadResult) ErrorString() string {
	n := r.ErrorCount()
	if n == 0 {
		return "0"
	}
	kinds := make([]string, 0, len(r.Errors))
	for k, v := range r.Errors {
		if v > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, r.Errors[k])
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

// RPS is OK responses per second; errors never count as throughput.
func (r *LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

var (
	patternMu  sync.Mutex
	patternBuf []byte
)

// sharedPattern returns the first n bytes of one process-wide, read-only
// pattern buffer. Every request body and every expected response body is a
// prefix of it, so a run of any body size allocates its body once, not per
// request. Callers must not write to the result.
func sharedPattern(n int) []byte {
	patternMu.Lock()
	defer patternMu.Unlock()
	if len(patternBuf) < n {
		patternBuf = fillPattern(make([]byte, n))
	}
	return patternBuf[:n:n]
}

// loadStats holds the counters shared by the workers of one run.
type loadStats struct {
	hist      *Histogram
	ttfb      *Histogram
	started   atomic.Int64
	ok        atomic.Int64
	bodySent  atomic.Int64
	bytesRecv atomic.Int64
	errs      [5]atomic.Int64 // indexed like errKinds
}

var errKinds = [5]string{errConnect, errTimeout, errStatus, errBody, errIO}

func (s *loadStats) countErr(kind string) {
	for i, k := range errKinds {
		if k == kind {
			s.errs[i].Add(1)
			return
		}
	}
}

func (s *loadStats) errTotal() int64 {
	var n int64
	for i := range s.errs {
		n += s.errs[i].Load()
	}
	return n
}

// classify maps a client error to a kind.
func classify(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, syscall.ECONNREFUSED),
		errors.As(err, &op) && op.Op == "dial":
		return errConnect
	case errors.Is(err, fasthttp.ErrTimeout):
		return errTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return errIO
}

// RunLoad runs one load and returns when every started request has
// finished. Both loops are bounded in time (Duration, then at most Timeout
// for the requests in flight) and in count (MaxRequests). Cancelling ctx
// stops starting new requests.
func RunLoad(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	if cfg.Tool == toolWrk && wrkFits(&cfg) {
		return runWrk(ctx, cfg)
	}
	if cfg.Conns <= 0 {
		return nil, errors.New("bench: conns must be > 0")
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("bench: duration must be > 0")
	}
	if cfg.Method == "" {
		cfg.Method = fasthttp.MethodGet
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.ExpectStatus == 0 {
		cfg.ExpectStatus = fasthttp.StatusOK
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	open := cfg.Rate > 0
	if cfg.MaxRequests <= 0 {
		if open {
			cfg.MaxRequests = int64(cfg.Rate * cfg.Duration.Seconds())
		} else {
			// One million per second per run is far above what loopback on
			// a small machine gives; it only keeps the loop finite.
			cfg.MaxRequests = int64(cfg.Duration.Seconds()*1e6) + 1
		}
	}
	hc := &fasthttp.HostClient{
		Addr:                          cfg.Addr,
		Name:                          "vkp-bench",
		MaxConns:                      cfg.Conns,
		MaxConnWaitTimeout:            cfg.Timeout,
		ReadTimeout:                   cfg.Timeout,
		WriteTimeout:                  cfg.Timeout,
		MaxIdleConnDuration:           time.Minute,
		MaxResponseBodySize:           256 << 20,
		Dial:                          cfg.Dial,
		DisableHeaderNamesNormalizing: true,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		StreamResponseBody:            cfg.Stream,
	}
	defer hc.CloseIdleConnections()

	body := sharedPattern(cfg.BodySize)
	var want []byte
	if cfg.ExpectBodySize >= 0 && !cfg.Stream {
		want = sharedPattern(cfg.ExpectBodySize)
	}
	st := &loadStats{hist: NewHistogram(), ttfb: NewHistogram()}

	// The hard stop covers the run plus one timeout for the last requests.
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.Timeout+time.Second)
	defer cancel()

	start := time.Now()
	deadline := start.Add(cfg.Duration)
	stopProgress := startProgress(cfg.Progress, cfg.Label, start, st)

	one := func(worker int, req *fasthttp.Request, resp *fasthttp.Response, from time.Time) {
		err := hc.Do(req, resp)
		ttfb := time.Since(from)
		var n int64
		var okBody bool
		if cfg.Stream && err == nil {
			// Body() would read the whole stream into memory: count it.
			if bs := resp.BodyStream(); bs != nil {
				n, err = io.Copy(io.Discard, bs)
			}
			if cerr := resp.CloseBodyStream(); err == nil {
				err = cerr
			}
			okBody = cfg.ExpectBodySize < 0 || n == int64(cfg.ExpectBodySize)
		} else {
			n = int64(len(resp.Body()))
			okBody = want == nil || bytes.Equal(resp.Body(), want)
		}
		lat := time.Since(from)
		switch {
		case err != nil:
			st.countErr(classify(err))
		case resp.StatusCode() != cfg.ExpectStatus:
			st.countErr(errStatus)
		case !okBody:
			st.countErr(errBody)
		default:
			st.ok.Add(1)
			st.bodySent.Add(int64(len(body)))
			st.bytesRecv.Add(n)
			st.hist.Record(worker, lat)
			if cfg.Stream {
				st.ttfb.Record(worker, ttfb)
			}
		}
	}

	var next atomic.Int64 // next request number to start
	var wg sync.WaitGroup
	for w := 0; w < cfg.Conns; w++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + cfg.Addr + cfg.Path)
			req.Header.SetMethod(cfg.Method)
			if cfg.BodySize > 0 {
				// SetBodyRaw does not copy: all workers share the read-only body.
				req.SetBodyRaw(body)
			}
			var timer *time.Timer
			if open {
				timer = time.NewTimer(time.Hour)
				defer timer.Stop()
			}
			for runCtx.Err() == nil {
				i := next.Add(1) - 1
				if i >= cfg.MaxRequests {
					return
				}
				if !open {
					if !time.Now().Before(deadline) {
						return
					}
					st.started.Add(1)
					one(worker, req, resp, time.Now())
					continue
				}
				// Open loop: request i is due at start + i/rate whether or
				// not earlier ones have finished. Latency counts from that
				// intended time, so a stalled proxy shows its queueing
				// delay instead of silently slowing the sender down
				// (coordinated omission).
				intended := intendedSendTime(start, i, cfg.Rate)
				if !intended.Before(deadline) {
					return
				}
				if d := time.Until(intended); d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-runCtx.Done():
						return
					}
				}
				st.started.Add(1)
				one(worker, req, resp, intended)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if open && elapsed < cfg.Duration {
		elapsed = cfg.Duration
	}
	stopProgress()

	res := &LoadResult{
		Tool:      toolGo,
		Mode:      "closed",
		Elapsed:   elapsed,
		Started:   st.started.Load(),
		OK:        st.ok.Load(),
		Errors:    map[string]int64{},
		BodySent:  st.bodySent.Load(),
		BytesRecv: st.bytesRecv.Load(),
		Latency:   st.hist.Summary(),
	}
	if cfg.Stream {
		res.TTFB = st.ttfb.Summary()
	}
	if open {
		res.Mode = "open"
	}
	for i, k := range errKinds {
		if n := st.errs[i].Load(); n > 0 {
			res.Errors[k] = n
		}
	}
	return res, ctx.Err()
}

// intendedSendTime is when request i of an open-loop run at rate req/s is
// due: a fixed schedule that does not depend on earlier responses.
func intendedSendTime(start time.Time, i int64, rate float64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// startProgress prints one line per second to w until the returned func is
// called.
func startProgress(w io.Writer, label string, start time.Time, st *loadStats) func() {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastOK int64
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ok := st.ok.Load()
				fmt.Fprintf(w, "  %-32s %4.0fs  ok %8d  %8.0f rps  errors %d\n",
					label, now.Sub(start).Seconds(), ok, float64(ok-lastOK), st.errTotal())
				lastOK = ok
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
