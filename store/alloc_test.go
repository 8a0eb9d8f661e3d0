//go:build !race

package store

import (
	"context"
	"testing"
	"time"
)

// TestMemoryAlloc pins the allocations of the memory store's hot paths.
//
// A hit allocates exactly 2, both inside bigcache v3.1.0's shard.get: the
// copy of the stored key it compares against (readKeyFromEntry) and the
// copy of the entry it returns (readEntry). Memory adds none: the key is
// viewed as a string without a copy, and the value is that copy past the
// 8-byte expiry. A miss allocates nothing, nor does a Set of a value that
// fits the pooled buffers.
func TestMemoryAlloc(t *testing.T) {
	m, err := NewMemory(MemoryOptions{MaxBytes: 8 << 20, MaxEntry: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	key := []byte("GET|example.com|/index.html?q=1")
	val := make([]byte, 4096)
	mustSet(t, m, key, val, time.Hour)
	missing := []byte("GET|example.com|/missing")

	tests := []struct {
		name string
		want float64
		f    func()
	}{
		{"hit", 2, func() {
			if v, err := m.Get(ctx, key); err != nil || len(v) != len(val) {
				t.Fatalf("Get = %d bytes, %v", len(v), err)
			}
		}},
		{"miss", 0, func() {
			if _, err := m.Get(ctx, missing); err != ErrNotFound {
				t.Fatalf("Get = %v", err)
			}
		}},
		{"set", 0, func() {
			if err := m.Set(ctx, key, val, time.Hour); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(200, tc.f); got != tc.want {
				t.Fatalf("%s allocates %v times, want %v", tc.name, got, tc.want)
			}
		})
	}
}
