package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"

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
// response), 413 body over the limit, 400/408/501/505 for what the client
// sent, 502 any other upstream failure.
func statusFor(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, ErrNoRoute):
		return fasthttp.StatusNotFound
	case errors.Is(err, ErrAmbiguousPath), errors.Is(err, errBadFraming), errors.Is(err, errBadHeaderName),
		errors.Is(err, errMissingHost), errors.Is(err, errClientBody), errors.Is(err, errBodyShort):
		return fasthttp.StatusBadRequest
	case errors.Is(err, errUnsupportedTE):
		return fasthttp.StatusNotImplemented
	case errors.Is(err, errHTTPVersion):
		return fasthttp.StatusHTTPVersionNotSupported
	case errors.Is(err, errConnect):
		return fasthttp.StatusMethodNotAllowed
	case errors.Is(err, errClientBodySlow):
		return fasthttp.StatusRequestTimeout
	case errors.Is(err, errClientGone):
		return statusClientClosed
	case errors.Is(err, ErrNoDestination), errors.Is(err, errNoFreeConns), errors.Is(err, errBodyMemory):
		return fasthttp.StatusServiceUnavailable
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusBadGateway
}

// statusClientClosed is what the log says of a request whose client left
// before its answer (nginx's 499); nothing reaches the client.
const statusClientClosed = 499

// isClientErr reports failures caused by the client's side of a request
// (its body, its connection): they are never retried upstream.
func isClientErr(err error) bool {
	return errors.Is(err, errClientBody) || errors.Is(err, errClientBodySlow) || errors.Is(err, errBodyShort) ||
		errors.Is(err, errClientGone) || errors.Is(err, fasthttp.ErrBodyTooLarge)
}

// Short plain bodies for proxy-generated errors; the log gets the reason.
var errorBodies = map[int][]byte{}

func init() {
	for _, s := range []int{400, 404, 405, 408, 413, 431, 501, 502, 503, 504, 505} {
		errorBodies[s] = []byte(fasthttp.StatusMessage(s) + "\n")
	}
}

// fail replaces whatever response x's ctx holds with the error's status
// and a short body. A failure that leaves the client connection in an
// unknown state (a refused framing, a body not read to its end) closes it.
// Not-found and client mistakes are routine and logged at debug level.
func (e *Engine) fail(x *exchange, err error, dest *Destination) {
	x.failed = true
	x.status = statusFor(err)
	if dest != nil {
		x.dest = dest
	}
	if e.opts.Sampler.Mode() == SampleTrace && !x.trace.sampled() {
		// A request whose trace is not sampled writes no line.
		e.failQuiet(x.ctx, err)
	} else {
		e.failCtx(x.ctx, err, x.route, dest)
	}
	if x.closeClient || !x.body.whole() {
		x.closeLingering()
	}
}

func (e *Engine) failCtx(ctx *fasthttp.RequestCtx, err error, route *Route, dest *Destination) {
	status := e.failQuiet(ctx, err)
	level := slog.LevelWarn
	if status < 500 {
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

// failQuiet writes the error answer without a log line, and returns its
// status.
func (e *Engine) failQuiet(ctx *fasthttp.RequestCtx, err error) int {
	status := statusFor(err)
	ctx.Response.Reset()
	if status == statusClientClosed {
		// Nothing goes to a client that left (or half-closed): its
		// connection is closed without an answer, as nginx does.
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(net.Conn) {})
	} else {
		ctx.Response.SetStatusCode(status)
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetBodyRaw(errorBodies[status])
	}
	return status
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
	case !errors.Is(err, fasthttp.ErrUnsupportedTransferEncoding) && strings.Contains(err.Error(), "unsupported transfer-encoding: "):
		// A transfer coding fasthttp does not know (RFC 9112 6.1: 501).
		// Its sentinel is for Transfer-Encoding in HTTP/1.0, which is
		// faulty framing (400); the coding error has none unless error
		// messages are made secure, which would hide the rest from the
		// debug log.
		status = fasthttp.StatusNotImplemented
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
