package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/valyala/fasthttp"
)

// Sentinel errors. Every error a request can end in is mapped to a status in
// statusFor, and nowhere else.
var (
	ErrNoRoute       = errors.New("engine: no route matches the request")
	ErrNoDestination = errors.New("engine: no available destination")
	ErrAmbiguousPath = errors.New("engine: path has dot-segments")
)

// statusFor maps a request's failure to the status the client gets:
// 404 no route, 503 no destination, 504 upstream timeout (connect or
// response), 413 body over the limit, 502 any other upstream failure.
func statusFor(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, ErrNoRoute):
		return fasthttp.StatusNotFound
	case errors.Is(err, ErrAmbiguousPath):
		return fasthttp.StatusBadRequest
	case errors.Is(err, ErrNoDestination):
		return fasthttp.StatusServiceUnavailable
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusBadGateway
}

// Short plain bodies for proxy-generated errors; the log gets the reason.
var errorBodies = map[int][]byte{}

func init() {
	for _, s := range []int{400, 404, 408, 413, 431, 502, 503, 504} {
		errorBodies[s] = []byte(fasthttp.StatusMessage(s) + "\n")
	}
}

// fail replaces whatever response ctx holds with the error's status and a
// short body. Not-found is the routine case and is logged at debug level.
func (e *Engine) fail(ctx *fasthttp.RequestCtx, err error, route *Route, dest *Destination) {
	status := statusFor(err)
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyRaw(errorBodies[status])
	level := slog.LevelWarn
	if status == fasthttp.StatusNotFound || status == fasthttp.StatusBadRequest {
		level = slog.LevelDebug
	}
	if !e.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.Int("status", status),
		slog.String("method", string(ctx.Method())),
		slog.String("uri", string(ctx.RequestURI())),
		slog.String("error", err.Error()),
	}
	if route != nil {
		attrs = append(attrs, slog.String("route", route.ID))
	}
	if dest != nil {
		attrs = append(attrs, slog.String("destination", dest.Address))
	}
	e.log.LogAttrs(context.Background(), level, "request failed", attrs...)
}

// serverError answers requests fasthttp could not read (bad syntax, body
// over the limit, read timeout) through the same mapping.
func (e *Engine) serverError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		status = fasthttp.StatusRequestTimeout
	case isSmallBuffer(err):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	}
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyRaw(errorBodies[status])
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.LogAttrs(context.Background(), slog.LevelDebug, "bad request", slog.Int("status", status), slog.String("error", err.Error()))
	}
}

func isSmallBuffer(err error) bool {
	var sb *fasthttp.ErrSmallBuffer
	return errors.As(err, &sb)
}
