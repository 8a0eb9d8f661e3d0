package engine

import (
	"bufio"
	"bytes"
	"net"
	"time"
)

// Lingering close. A connection whose request body was not read to its end
// (an early answer such as 413, a body refused midway) must close after its
// answer. Closing a socket with unread data makes the kernel send a reset,
// and a client still sending its body can lose the answer to it: it reads
// "connection reset" instead of the 413 the upstream gave. So, as nginx
// does (lingering_close), vkp writes the answer, half-closes, and reads and
// discards what the client still sends, for lingerTime at most, before
// closing.

const (
	lingerTime = 5 * time.Second // longest drain after the answer
	lingerIdle = time.Second     // the drain stops when the client is quiet this long
)

// closeLingering makes the connection close after its answer, lingering
// when the answer is in memory; a streamed answer, or a connection already
// taken over, just closes.
func (x *exchange) closeLingering() {
	ctx := x.ctx
	ctx.SetConnectionClose()
	if x.stream != nil || ctx.Hijacked() || !canWatch(ctx) {
		return
	}
	// The answer, as the server would write it; the handler's ctx is gone
	// by the time the drain runs.
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := ctx.Response.Write(bw); err != nil || bw.Flush() != nil {
		return
	}
	writeTO := x.e.opts.WriteTimeout
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		raw := c
		if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
			raw = u.UnsafeConn()
		}
		defer raw.Close()
		raw.SetWriteDeadline(time.Now().Add(writeTO)) //nolint:errcheck // a dead conn fails the write
		if _, err := raw.Write(b.Bytes()); err != nil {
			return
		}
		if cw, ok := raw.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite() //nolint:errcheck // the client then sees the answer end
		}
		end := time.Now().Add(lingerTime)
		buf := make([]byte, 32<<10)
		for time.Now().Before(end) {
			raw.SetReadDeadline(minTime(end, time.Now().Add(lingerIdle))) //nolint:errcheck
			if _, err := c.Read(buf); err != nil {
				return // the client is done (EOF), quiet, or gone
			}
		}
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
