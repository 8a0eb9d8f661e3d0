package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptOrigin is an origin on a raw socket whose answers a test scripts
// byte for byte: Date, Age and Expires included (a fasthttp server writes
// its own Date). It records every request it gets.
type scriptOrigin struct {
	addr string
	mu   sync.Mutex
	reqs []originReq
	// answer returns the response for a request; nil handler: 200 "ok".
	answer func(r originReq) originResp
}

type originReq struct {
	method, target string
	header         textproto.MIMEHeader
	body           []byte
}

type originResp struct {
	status int
	header []string // "Name: value" lines
	body   string
	delay  time.Duration
	// cut: the connection closes after this many body bytes (0: none).
	cut int
}

func startScriptOrigin(t testing.TB, answer func(r originReq) originResp) *scriptOrigin {
	t.Helper()
	o := &scriptOrigin{answer: answer}
	o.addr = rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) { o.serve(c, br) })
	return o
}

func (o *scriptOrigin) serve(c net.Conn, br *bufio.Reader) {
	tp := textproto.NewReader(br)
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		parts := strings.SplitN(line, " ", 3)
		if len(parts) < 2 {
			return
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil && err != io.EOF {
			return
		}
		r := originReq{method: parts[0], target: parts[1], header: hdr}
		if n, _ := strconv.Atoi(hdr.Get("Content-Length")); n > 0 {
			r.body = make([]byte, n)
			if _, err := io.ReadFull(br, r.body); err != nil {
				return
			}
		}
		o.mu.Lock()
		o.reqs = append(o.reqs, r)
		o.mu.Unlock()
		resp := originResp{status: 200, body: "ok"}
		if o.answer != nil {
			resp = o.answer(r)
		}
		if resp.delay > 0 {
			time.Sleep(resp.delay)
		}
		if resp.status == 0 {
			resp.status = 200
		}
		var b strings.Builder
		fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", resp.status, statusText(resp.status))
		for _, h := range resp.header {
			b.WriteString(h + "\r\n")
		}
		noBody := resp.status == 304 || resp.status == 204 || r.method == "HEAD"
		if !noBody || r.method == "HEAD" {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", len(resp.body))
		}
		b.WriteString("\r\n")
		if !noBody {
			body := resp.body
			if resp.cut > 0 {
				body = body[:resp.cut]
			}
			b.WriteString(body)
		}
		if _, err := io.WriteString(c, b.String()); err != nil || resp.cut > 0 {
			return
		}
	}
}

func statusText(s int) string {
	switch s {
	case 200:
		return "OK"
	case 304:
		return "Not Modified"
	}
	return "Status"
}

// count returns how many requests the origin got.
func (o *scriptOrigin) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

// last returns the last request the origin got.
func (o *scriptOrigin) last() originReq {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		return originReq{}
	}
	return o.reqs[len(o.reqs)-1]
}

// testClock is a settable wall clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now().Truncate(time.Second)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// date formats the clock's time plus off as an HTTP-date.
func (c *testClock) date(off time.Duration) string {
	return string(appendHTTPDate(nil, c.Now().Add(off)))
}
