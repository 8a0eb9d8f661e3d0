package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// clientConnEngine serves one route to an origin answering path-dependent
// bodies (after 50 ms for /slow) through Listener, and returns its address.
func clientConnEngine(t *testing.T, opts Options) string {
	t.Helper()
	e := mustEngine(t, oneRoute("", clientConnOrigin(t)), opts)
	_, addr := serveEngine(t, e)
	return addr
}

// clientConnOrigin answers "answer <path>", after 50 ms for /slow, and
// 15 KiB for /big.
func clientConnOrigin(t *testing.T) string {
	return startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		p := string(ctx.Path())
		if p == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		if p == "/big" {
			ctx.SetBody([]byte(strings.Repeat("b", 15<<10)))
			return
		}
		ctx.SetBodyString("answer " + p)
	})
}

// slowWindowEngine serves a route to an origin answering /big with a 15
// KiB body (an answer under keepMax, so clientConn keeps it) through
// Listener on a socket with a small send buffer, and returns a client
// connection with a small receive buffer: an answer of 15 KiB does not
// fit in the two buffers, so the server's write of it waits for the client
// to read.
func slowWindowEngine(t *testing.T, opts Options) net.Conn {
	t.Helper()
	e := mustEngine(t, oneRoute("", clientConnOrigin(t)), opts)
	lc := net.ListenConfig{Control: smallBuf(syscall.SO_SNDBUF, 2048)}
	ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serveEngineOn(t, e, ln)
	d := net.Dialer{Control: smallBuf(syscall.SO_RCVBUF, 1024)}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTest connects to addr for the test's length.
func dialTest(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readAnswer(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer %q: %v", want, err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("answer %d %.40q, want 200 %.40q", resp.StatusCode, b, want)
	}
}

// A pipelining client whose second request arrives while the first is
// being handled (after the server's read) gets both answers, the second
// well before the idle timeout: the read deadline cut while an answer is
// kept catches the wake-up the runtime forgot.
func TestClientConnPipelinedDuringHandler(t *testing.T) {
	addr := clientConnEngine(t, Options{IdleTimeout: 10 * time.Second})
	c := dialTest(t, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	for range 3 {
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
		time.Sleep(20 * time.Millisecond)                          // the server has read the first one
		io.WriteString(c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n")  //nolint:errcheck
		readAnswer(t, br, "answer /slow")
		readAnswer(t, br, "answer /two")
	}
}

// Requests spaced past the guard, and the idle timeout itself, work as
// without a kept answer: the guard's expiry reads the ordinary way and
// restores the server's deadline.
func TestClientConnIdleGapsAndTimeout(t *testing.T) {
	addr := clientConnEngine(t, Options{IdleTimeout: 700 * time.Millisecond})
	c := dialTest(t, addr)
	br := bufio.NewReader(c)
	for _, gap := range []time.Duration{0, 2 * pipelineGuard, 4 * pipelineGuard} {
		time.Sleep(gap)
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
		c.SetReadDeadline(time.Now().Add(5 * time.Second))      //nolint:errcheck
		readAnswer(t, br, "answer /a")
	}
	// Idle past the timeout: the server closes the connection.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %d, %v; want EOF from the idle timeout", n, err)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("closed after %v idle, before the 700ms idle timeout", waited)
	}
}

// A kept answer the socket takes only in part (a client reading through a
// small window) is finished the ordinary way, and the next request on the
// connection is read after it.
func TestClientConnSlowReader(t *testing.T) {
	c := slowWindowEngine(t, Options{})
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	br := bufio.NewReaderSize(c, 512)
	for range 3 {
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
		time.Sleep(100 * time.Millisecond)                        // the answer fills the window
		readAnswer(t, br, strings.Repeat("b", 15<<10))
	}
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	readAnswer(t, br, "answer /a")
}

// An answer marked as the last (Connection: close) is not kept: the client
// gets it and then the end of the connection.
func TestClientConnCloseNotKept(t *testing.T) {
	addr := clientConnEngine(t, Options{})
	c := dialTest(t, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") //nolint:errcheck
	readAnswer(t, br, "answer /a")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the last answer: %v, want EOF", err)
	}
}

// An answer kept for the next read still leaves when the read deadline has
// already passed by then (here an idle timeout of 1 ns): the read fails
// at once, and the answer goes out the ordinary way before the
// connection closes.
func TestClientConnAnswerSentWhenReadDeadlinePassed(t *testing.T) {
	addr := clientConnEngine(t, Options{IdleTimeout: time.Nanosecond})
	c := dialTest(t, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))          //nolint:errcheck
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	br := bufio.NewReader(c)
	readAnswer(t, br, "answer /a")
}

// answerHead narrows the search for the server's Connection: close to the
// header block only when the bytes are exactly one answer.
func TestAnswerHead(t *testing.T) {
	one := "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n\r\nConnection: close\r\nabc"
	if got := string(answerHead([]byte(one), 24)); got != "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n" {
		t.Fatalf("one answer: %q", got)
	}
	two := "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\ny"
	if got := string(answerHead([]byte(two), 1)); got != two {
		t.Fatalf("two answers: %q", got)
	}
	if got := string(answerHead([]byte("HTTP/1.1 200 OK\r\n"), 0)); got != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("no blank line: %q", got)
	}
}

// captureListener records the client connections it accepts.
type captureListener struct {
	net.Listener
	conns chan *clientConn
}

func (l captureListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if cc, ok := c.(*clientConn); ok {
		l.conns <- cc
	}
	return c, err
}

// A keep-alive client's requests put almost no deadline on its socket:
// the server's read and write deadlines are kept until a call could wait
// on them, and the guard of a kept answer serves the requests that follow
// within half its time. The deadlines still hold: a header begun and not
// finished gets its header timeout (408), counted from its first byte, and
// a quiet connection its idle timeout.
func TestClientConnDeadlinesKept(t *testing.T) {
	e := mustEngine(t, oneRoute("", clientConnOrigin(t)),
		Options{HeaderTimeout: 400 * time.Millisecond, IdleTimeout: 600 * time.Millisecond, WriteTimeout: 10 * time.Second})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capture := captureListener{Listener(ln), make(chan *clientConn, 4)}
	srv := e.NewServer()
	go srv.Serve(capture)                //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck

	c := dialTest(t, ln.Addr().String())
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	const n = 200
	for range n {
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
		readAnswer(t, br, "answer /a")
	}
	cc := <-capture.conns
	// Three per request (idle, header, write) without keeping; with it, one
	// for the first request's header, one guard per half guard of time,
	// and nothing else.
	sets := cc.dlSets.Load()
	t.Logf("%d requests: %d deadlines put on the socket", n, sets)
	if sets > 20 {
		t.Fatalf("%d requests put %d deadlines on the socket", n, sets)
	}

	// A header begun and not finished: 408 after the header timeout.
	start := time.Now()
	io.WriteString(c, "GET /a HTTP/1.1\r\nHo") //nolint:errcheck
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("a stalled header: %v, want a 408", err)
	}
	resp.Body.Close()
	if waited := time.Since(start); resp.StatusCode != 408 || waited < 350*time.Millisecond || waited > 3*time.Second {
		t.Fatalf("a stalled header: %d after %v, want 408 after the 400ms header timeout", resp.StatusCode, waited)
	}

	// A quiet connection, after a run of kept answers: closed after the
	// idle timeout, not at the guard.
	c2 := dialTest(t, ln.Addr().String())
	c2.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	br2 := bufio.NewReader(c2)
	for range 20 {
		io.WriteString(c2, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
		readAnswer(t, br2, "answer /a")
	}
	start = time.Now()
	if n, err := br2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %d, %v; want EOF from the idle timeout", n, err)
	}
	if waited := time.Since(start); waited < 550*time.Millisecond || waited > 3*time.Second {
		t.Fatalf("closed after %v idle, want the 600ms idle timeout", waited)
	}
}

// The write deadline of a kept answer, put on the socket only when the
// answer does not fit in it at once, still bounds the write: a client that
// stops reading loses its connection after --write-timeout.
func TestClientConnKeptAnswerWriteTimeout(t *testing.T) {
	c := slowWindowEngine(t, Options{WriteTimeout: 300 * time.Millisecond, IdleTimeout: 30 * time.Second})
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	time.Sleep(1500 * time.Millisecond)                       // not reading: the write waits, then times out
	c.SetDeadline(time.Now().Add(5 * time.Second))            //nolint:errcheck
	b, err := io.ReadAll(c)
	if isTimeoutErr(err) {
		t.Fatalf("after %d bytes the connection is still open: the write timeout did not hold", len(b))
	}
	if len(b) >= 15<<10 {
		t.Fatalf("the whole answer (%d bytes) arrived; want it cut by the 300ms write timeout", len(b))
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
