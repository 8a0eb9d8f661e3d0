package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// OriginConfig is what an origin answers. The zero value answers an empty 200.
type OriginConfig struct {
	Size         int           // response body size in bytes
	Delay        time.Duration // per-request delay before answering (a slow shadow)
	CacheControl string        // Cache-Control value; empty means no header
}

// OriginStats is the JSON document served at GET /__stats.
type OriginStats struct {
	Requests  int64 `json:"requests"`
	BodyBytes int64 `json:"body_bytes"`
}

// Origin is the fake upstream used by every scenario. It reads each request
// body fully (fasthttp does, unless told to stream) and counts requests and
// body bytes, so a run can prove that every byte of a POST arrived.
// /__stats and /__reset are not counted.
type Origin struct {
	cfg       OriginConfig
	body      []byte // shared, read-only response body
	requests  atomic.Int64
	bodyBytes atomic.Int64
	srv       *fasthttp.Server
}

// NewOrigin returns an origin that answers with cfg.Size bytes of a
// deterministic pattern (see fillPattern) so clients can check the body.
func NewOrigin(cfg OriginConfig) *Origin {
	o := &Origin{cfg: cfg, body: fillPattern(make([]byte, cfg.Size))}
	o.srv = &fasthttp.Server{
		Handler:            o.handle,
		Name:               "bench-origin",
		MaxRequestBodySize: 256 << 20,
		ReadTimeout:        60 * time.Second,
		WriteTimeout:       60 * time.Second,
		IdleTimeout:        60 * time.Second,
		NoDefaultDate:      true,
		CloseOnShutdown:    true,
	}
	return o
}

// Serve serves on ln until Shutdown.
func (o *Origin) Serve(ln net.Listener) error { return o.srv.Serve(ln) }

// Shutdown stops the server, waiting for open requests.
func (o *Origin) Shutdown(ctx context.Context) error { return o.srv.ShutdownWithContext(ctx) }

// Stats returns the counters.
func (o *Origin) Stats() OriginStats {
	return OriginStats{Requests: o.requests.Load(), BodyBytes: o.bodyBytes.Load()}
}

func (o *Origin) handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch string(path) {
	case "/__stats":
		b, _ := json.Marshal(o.Stats())
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
		return
	case "/__reset":
		if ctx.IsPost() {
			o.requests.Store(0)
			o.bodyBytes.Store(0)
			ctx.SetStatusCode(fasthttp.StatusNoContent)
			return
		}
	}
	// PostBody has been read in full by the server before the handler runs.
	o.bodyBytes.Add(int64(len(ctx.PostBody())))
	o.requests.Add(1)
	if o.cfg.Delay > 0 {
		time.Sleep(o.cfg.Delay)
	}
	if o.cfg.CacheControl != "" {
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, o.cfg.CacheControl)
	}
	ctx.SetContentType("application/octet-stream")
	// o.body is never written after NewOrigin, so it may be shared without copying.
	ctx.Response.SetBodyRaw(o.body)
}

// fillPattern fills b with a repeating printable pattern and returns it.
// Both the origin and the load generator use it for request and response
// bodies, so a body check is bytes.Equal against the same pattern.
func fillPattern(b []byte) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return b
}

// runOrigin is the `origin` subcommand: it serves until ctx is done and
// prints "listening on ADDR" on stdout once the socket is bound, so a
// parent started with --listen 127.0.0.1:0 learns the port.
func runOrigin(ctx context.Context, listen string, cfg OriginConfig) error {
	ln, err := net.Listen("tcp4", listen)
	if err != nil {
		return fmt.Errorf("bench: origin listen: %w", err)
	}
	o := NewOrigin(cfg)
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- o.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = o.Shutdown(sctx)
	return nil
}

// fetchStats reads GET /__stats from an origin at addr.
func fetchStats(addr string) (OriginStats, error) {
	var st OriginStats
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/__stats", 2*time.Second)
	if err != nil {
		return st, err
	}
	if status != fasthttp.StatusOK {
		return st, fmt.Errorf("bench: %s/__stats: status %d", addr, status)
	}
	err = json.Unmarshal(body, &st)
	return st, err
}

// resetStats zeroes an origin's counters with POST /__reset.
func resetStats(addr string) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/__reset")
	req.Header.SetMethod(fasthttp.MethodPost)
	if err := fasthttp.DoTimeout(req, resp, 2*time.Second); err != nil {
		return err
	}
	if resp.StatusCode() != fasthttp.StatusNoContent {
		return fmt.Errorf("bench: %s/__reset: status %d", addr, resp.StatusCode())
	}
	return nil
}

// settleStats polls an origin until its request count has not changed for
// `quiet`, or until max has passed, and returns the last reading. Mirror
// copies may still be in flight when the load stops; this waits for them
// without waiting forever for copies that were dropped.
func settleStats(ctx context.Context, addr string, quiet, max time.Duration) (OriginStats, error) {
	deadline := time.Now().Add(max)
	last, err := fetchStats(addr)
	if err != nil {
		return last, err
	}
	stableSince := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		st, err := fetchStats(addr)
		if err != nil {
			return last, err
		}
		if st != last {
			last, stableSince = st, time.Now()
			continue
		}
		if time.Since(stableSince) >= quiet {
			break
		}
	}
	return last, nil
}
