package engine

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A client that sends its whole body before reading gets the 413 vkp
// answered at once, not a reset: vkp half-closes and drains the rest.
// fasthttp's client, as many, gives up on a failed write without reading.
func TestLingeringCloseKeepsTheAnswer(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {})
	e, addr := hardEngine(t, Options{MaxRequestBodySize: 1 << 20}, "", origin)
	c, _ := serveEngine(t, e)
	for i := 0; i < 5; i++ {
		if resp := do(t, c, "POST", "/up", make([]byte, 8<<20)); resp.StatusCode() != 413 {
			t.Fatalf("round %d: %d", i, resp.StatusCode())
		}
	}
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		body := bytes.Repeat([]byte("x"), 8<<20)
		if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_, werr := c.Write(body) // may fail once vkp stops draining; the answer must be there either way
		resp, rerr := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(resp), "HTTP/1.1 413") || !strings.Contains(string(resp), "Connection: close") {
			t.Fatalf("round %d: answer %q (write %v, read %v)", i, resp, werr, rerr)
		}
	}
}
