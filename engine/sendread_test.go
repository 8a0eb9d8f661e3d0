package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A request held whole is sent by the first read of its answer
// (sendThenRead). When the socket takes only part of it (the upstream
// reads slowly through a small window), the rest goes through the
// ordinary write path and the answer still arrives, on a fresh connection
// and on a reused one.
func TestSendThenReadPartialWrite(t *testing.T) {
	lc := net.ListenConfig{Control: smallBuf(syscall.SO_RCVBUF, 2048)}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := rawOriginOn(t, ln, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			time.Sleep(100 * time.Millisecond) // let the sender fill the window
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			body := fmt.Sprintf("%d %x", len(b), b[len(b)-4:])
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
	e := mustEngine(t, oneRoute("", addr), Options{Dial: func(addr string) (net.Conn, error) {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			return nil, err
		}
		c.(*net.TCPConn).SetWriteBuffer(1) //nolint:errcheck // the kernel's minimum
		return c, nil
	}})
	c, _ := serveEngine(t, e)
	body := bytes.Repeat([]byte("0123456789abcdef"), 12<<10/16) // 12 KiB: held whole, one buffered write
	copy(body[len(body)-4:], "tail")
	for i := range 2 {
		resp := do(t, c, "POST", "/p", body)
		want := strconv.Itoa(len(body)) + " 7461696c"
		if resp.StatusCode() != 200 || string(resp.Body()) != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode(), resp.Body(), want)
		}
	}
}

// An upstream that closes the connection instead of answering, or answers
// at once with the request barely sent, is read right after a request
// sent by sendThenRead.
func TestSendThenReadEdges(t *testing.T) {
	addr := rawOrigin(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/close" {
				return // no answer
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") //nolint:errcheck
		}
	})
	e := mustEngine(t, oneRoute("", addr), Options{})
	c, _ := serveEngine(t, e)
	for i := range 3 {
		if resp := do(t, c, "GET", "/a", nil); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode(), resp.Body())
		}
	}
	if resp := do(t, c, "GET", "/close", nil); resp.StatusCode() != 502 {
		t.Fatalf("an upstream that closed without answering: %d %q, want 502", resp.StatusCode(), resp.Body())
	}
	if resp := do(t, c, "GET", "/a", nil); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
		t.Fatalf("GET after: %d %q", resp.StatusCode(), resp.Body())
	}
}

// A deadline is kept from one exchange to the next only while it is still
// half a check period away and no later than wanted.
func TestKeepDeadline(t *testing.T) {
	now := time.Now()
	want := now.Add(clientCheckEvery)
	for _, tc := range []struct {
		cur  time.Time
		keep bool
	}{
		{time.Time{}, false},
		{now.Add(clientCheckEvery * 3 / 4), true},
		{want, true},
		{want.Add(time.Millisecond), false},    // later than wanted
		{now.Add(clientCheckEvery / 4), false}, // too close
		{now.Add(-time.Second), false},         // passed
	} {
		if got := keepDeadline(tc.cur, want, now); got != tc.keep {
			t.Errorf("keepDeadline(now%+v) = %v, want %v", tc.cur.Sub(now), got, tc.keep)
		}
	}
}
