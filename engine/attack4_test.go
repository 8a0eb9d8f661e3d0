package engine

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The last answer of a connection (the client sent "Connection: close",
// which the proxy strips from the request before armWriteBehind looks at
// it; likewise an HTTP/1.0 request without keep-alive) is kept by
// clientConn, and the server then closes the connection: clientConn.Close
// writes the kept answer with a fixed one-second deadline instead of the
// server's --write-timeout (60 s by default, 10 s here). A client reading
// slowly, whose window does not take the whole answer within a second,
// gets a truncated answer (and a reset) where the same exchange without
// Listener, or on a keep-alive connection, waits for it up to the write
// timeout.
func TestAttack4LastAnswerGetsOneSecondNotWriteTimeout(t *testing.T) {
	for _, req := range []string{
		"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET /big HTTP/1.0\r\nHost: x\r\n\r\n",
	} {
		t.Run(strings.Fields(req)[2], func(t *testing.T) {
			c := slowWindowEngine(t, Options{WriteTimeout: 10 * time.Second})
			io.WriteString(c, req)                          //nolint:errcheck
			time.Sleep(2 * time.Second)                     // a slow reader: nothing read for 2 s
			c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
			b, err := io.ReadAll(c)
			if !strings.HasSuffix(string(b), strings.Repeat("b", 15<<10)) {
				t.Fatalf("the last answer, read after 2 s (write timeout 10 s): %d bytes, %v; want the whole 15 KiB body",
					len(b), err)
			}
		})
	}
}

// A kept answer the socket does not take at once is finished, inside the
// server's read for the next request, by a blocking write (up to the write
// timeout); the idle deadline the server set before that read is then put
// back as it was. The time the client took to receive the answer is
// counted against --idle-timeout: a slow reader whose answer took longer
// than the idle timeout finds its connection closed the moment the answer
// is out, and its next request on it fails. Without Listener the server
// writes the answer first and only then starts the idle timeout.
func TestAttack4SlowAnswerEatsIdleTimeout(t *testing.T) {
	c := slowWindowEngine(t, Options{IdleTimeout: time.Second, WriteTimeout: 10 * time.Second})
	br := bufio.NewReaderSize(c, 512)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	time.Sleep(1500 * time.Millisecond)                       // receiving the answer takes 1.5 s
	c.SetDeadline(time.Now().Add(5 * time.Second))            //nolint:errcheck
	readAnswer(t, br, strings.Repeat("b", 15<<10))
	// At once, well within the idle timeout of the connection's idle time.
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the next request, sent as soon as the answer was read (idle timeout 1 s): %v", err)
	}
	resp.Body.Close()
}
