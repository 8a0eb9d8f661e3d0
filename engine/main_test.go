package engine

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind: engines
// are closed by the helpers that make them, servers are shut down, and
// mirror senders and pool janitors must end with their engine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's worker pool cleaner sleeps 10 s before it sees its
		// server has stopped, and the test clients' connection cleaners as
		// long before they see no connection; the process-wide dialer's DNS
		// cache cleaner lives with the process.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}
