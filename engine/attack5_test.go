package engine

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// attack5Server serves e on a loopback listener with a small send buffer,
// through Listener when wrap is set, and returns the server (the test
// shuts it down itself) and a client connection with a small receive
// buffer: a 15 KiB answer does not fit in the two buffers, so its write
// waits for the client to read.
func attack5Server(t *testing.T, e *Engine, wrap bool) (*fasthttp.Server, net.Conn) {
	t.Helper()
	lc := net.ListenConfig{Control: smallBuf(syscall.SO_SNDBUF, 2048)}
	ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.NewServer()
	var sl net.Listener = ln
	if wrap {
		sl = Listener(ln)
	}
	go srv.Serve(sl)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	d := net.Dialer{Control: smallBuf(syscall.SO_RCVBUF, 1024)}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// A graceful shutdown (the server's Shutdown: vkp's SIGTERM handling,
// cli.go) closes the connections fasthttp counts as idle, those past the
// write of their last answer and waiting for the next request. Without
// Listener a connection whose answer a slow client is still receiving is
// not idle (the server is still in the write), so Shutdown waits for it.
// With Listener the server's write only kept the answer: the connection is
// marked idle at once, and the answer is written by the next Read, which
// finishes it with a blocking write when the socket does not take it at
// once. Shutdown's closeIdleConns then calls clientConn.Close, which finds
// nothing kept (the Read took it) and closes the socket under that write:
// the client gets part of the answer and then the end of the connection.
func TestAttack5ShutdownCutsAnswerBeingWritten(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		name := "plain"
		if wrap {
			name = "Listener"
		}
		t.Run(name, func(t *testing.T) {
			e := mustEngine(t, oneRoute("", clientConnOrigin(t)), Options{WriteTimeout: 10 * time.Second})
			srv, c := attack5Server(t, e, wrap)
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
			time.Sleep(500 * time.Millisecond)                        // answered; the rest of it waits for the client
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- srv.ShutdownWithContext(ctx) }()
			time.Sleep(300 * time.Millisecond)             // the client reads only now
			c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
			b, err := io.ReadAll(bufio.NewReader(c))
			if !strings.HasSuffix(string(b), strings.Repeat("b", 15<<10)) {
				t.Fatalf("an answer being written when the server shuts down gracefully: %d bytes, %v; want the whole 15 KiB body",
					len(b), err)
			}
			<-done
		})
	}
}

// An answer finished after Shutdown began (the handler was waiting on the
// upstream) is kept by clientConn; the server then ends the connection
// (CloseOnShutdown), its goroutine returns (fasthttp's count of open
// connections drops, and ShutdownWithContext returns), and only then does
// clientConn.Close write the answer, from a goroutine nothing waits for.
// vkp returns from its serve function right after Shutdown and the process
// exits, cutting the answer to a client still receiving it. Without
// Listener, Shutdown returns only once the answer is written.
func TestAttack5ShutdownReturnsBeforeLastAnswerIsOut(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(400 * time.Millisecond)
		ctx.SetBody([]byte(strings.Repeat("b", 15<<10)))
	})
	for _, wrap := range []bool{false, true} {
		name := "plain"
		if wrap {
			name = "Listener"
		}
		t.Run(name, func(t *testing.T) {
			e := mustEngine(t, oneRoute("", origin), Options{WriteTimeout: 10 * time.Second})
			srv, c := attack5Server(t, e, wrap)
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
			time.Sleep(100 * time.Millisecond)                        // the handler waits on the origin
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan time.Time, 1)
			go func() {
				srv.ShutdownWithContext(ctx) //nolint:errcheck
				done <- time.Now()
			}()
			time.Sleep(1500 * time.Millisecond) // the client reads only now
			readFrom := time.Now()
			c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
			b, err := io.ReadAll(bufio.NewReader(c))
			if !strings.HasSuffix(string(b), strings.Repeat("b", 15<<10)) {
				t.Fatalf("the last answer: %d bytes, %v; want the whole 15 KiB body", len(b), err)
			}
			if returned := <-done; returned.Before(readFrom) {
				t.Fatalf("Shutdown returned %v before the client read anything of a 15 KiB answer that cannot fit in the socket buffers: "+
					"the answer was still being written (the process exits after Shutdown)", readFrom.Sub(returned).Round(time.Millisecond))
			}
		})
	}
}
