package store

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind: the
// disk sweeper, bigcache's cleaner, the Redis connector and rueidis's
// connection goroutines must all end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
