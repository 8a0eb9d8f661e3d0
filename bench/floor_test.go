//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// startFloor serves the floor on a free loopback port until the test ends.
func startFloor(t *testing.T, size, workers int) string {
	t.Helper()
	fds, addr, err := floorListen("127.0.0.1:0", workers)
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) != workers {
		t.Fatalf("%d listening sockets for %d workers", len(fds), workers)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveFloor(ctx, fds, size, "public, max-age=60") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("the floor did not stop")
		}
	})
	return addr
}

// dialFloor connects to the floor at addr, with a deadline d from now, for
// the test's length.
func dialFloor(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d)) //nolint:errcheck
	return c
}

func TestFloorAnswersKeepAliveAndPipelined(t *testing.T) {
	addr := startFloor(t, 4096, 2)
	c := dialFloor(t, addr, 5*time.Second)
	br := bufio.NewReader(c)
	read := func(head bool) *fasthttp.Response {
		t.Helper()
		var r fasthttp.Response
		r.SkipBody = head
		if err := r.Read(br); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	// One request, then three in one write (the third split across two
	// writes), then a HEAD.
	if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := read(false)
	if r.StatusCode() != 200 || !bytes.Equal(r.Body(), sharedPattern(4096)) {
		t.Fatalf("status %d, %d body bytes (pattern: %v)", r.StatusCode(), len(r.Body()), bytes.Equal(r.Body(), sharedPattern(4096)))
	}
	if got := string(r.Header.Peek("Cache-Status")); got != "floor; hit; ttl=59" {
		t.Fatalf("Cache-Status %q", got)
	}
	if _, err := io.WriteString(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHo"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := io.WriteString(c, "st: x\r\n\r\nHEAD /e HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := read(false); len(r.Body()) != 4096 {
			t.Fatalf("pipelined answer with %d body bytes", len(r.Body()))
		}
	}
	if r := read(true); r.Header.ContentLength() != 4096 {
		t.Fatalf("HEAD: Content-Length %d", r.Header.ContentLength())
	}
	// Nothing more came than was asked for.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) //nolint:errcheck
	if n, err := br.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Fatalf("after the last answer: %d bytes, %v", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A request the floor does not serve (another method, a body, a header
// over its bound) ends the connection without an answer.
func TestFloorRefuses(t *testing.T) {
	addr := startFloor(t, 128, 1)
	for name, req := range map[string]string{
		"POST":           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET with body":  "GET / HTTP/1.1\r\nHost: x\r\ncontent-length : 3\r\n\r\nabc",
		"chunked":        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"header too big": "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", floorMaxHead+10),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialFloor(t, addr, 5*time.Second)
			io.WriteString(c, req) //nolint:errcheck // the floor may close before all is written
			b, err := io.ReadAll(c)
			if len(b) != 0 {
				t.Fatalf("answered %q", b)
			}
			if isTimeout(err) {
				t.Fatal("the connection stayed open")
			}
		})
	}
	// A zero Content-Length is no body.
	c := dialFloor(t, addr, 5*time.Second)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") //nolint:errcheck
	var r fasthttp.Response
	if err := r.Read(bufio.NewReader(c)); err != nil || len(r.Body()) != 128 {
		t.Fatalf("Content-Length: 0: %v, %d body bytes", err, len(r.Body()))
	}
}

// A client that sends many requests and reads nothing gets its answers
// when it reads: the floor keeps at most one answer unsent and the rest of
// the requests unread, and answers them in order once the socket drains.
// Requests pipelined past the header bound in total (each one small) are
// all answered too: the bound is on one header, not on the requests
// waiting for the socket.
func TestFloorSlowReader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size, n int
	}{
		{"20 MiB of answers", 1 << 20, 20}, // more than the two sockets' buffers hold
		{"112 KB of requests", 4096, 4000}, // and 16 MB of answers
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startFloor(t, tc.size, 1)
			c := dialFloor(t, addr, 20*time.Second)
			if _, err := io.WriteString(c, strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", tc.n)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the floor fills the socket and waits
			br := bufio.NewReader(c)
			for i := range tc.n {
				var r fasthttp.Response
				if err := r.Read(br); err != nil {
					t.Fatalf("answer %d of %d: %v", i, tc.n, err)
				}
				if !bytes.Equal(r.Body(), sharedPattern(tc.size)) {
					t.Fatalf("answer %d: %d body bytes, not the pattern", i, len(r.Body()))
				}
			}
		})
	}
}

// The load generator, as the harness runs it, checks every body of the
// floor's answers over several workers' sockets.
func TestFloorUnderLoad(t *testing.T) {
	addr := startFloor(t, 4096, 2)
	res, err := RunLoad(context.Background(), LoadConfig{
		Addr: addr, Method: "GET", Path: "/bench", ExpectBodySize: 4096, Conns: 8,
		Duration: 300 * time.Millisecond, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || res.ErrorCount() != 0 {
		t.Fatalf("ok %d, errors %v", res.OK, res.Errors)
	}
}

func TestFloorPeer(t *testing.T) {
	px := floorProxy("/bin/bench")
	for _, sc := range scenarioTable {
		why := px.Supports(sc)
		if (why == "") != (sc.Name == "cache-hit") {
			t.Errorf("%s: %q", sc.Name, why)
		}
	}
	argv, err := px.Write(t.TempDir(), Topology{Listen: "127.0.0.1:9", Answer: 4096, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(argv, " "); got != "/bin/bench floor --listen 127.0.0.1:9 --size 4096 --workers 2" {
		t.Fatal(got)
	}
}
