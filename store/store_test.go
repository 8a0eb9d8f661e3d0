package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vkp-proxy/vkp/internal/redistest"
)

// storeKind opens fresh stores of one kind for the contract tests.
type storeKind struct {
	name string
	// open returns an empty store; the test closes it.
	open func(t *testing.T) Store
	// tooLarge is a value length the stores open returns refuse.
	tooLarge int
}

// kinds lists every store. Redis gets one redis-server for the whole test
// and a fresh prefix per store, so stores do not see each other's keys.
func kinds(parent *testing.T) []storeKind {
	var (
		mu  sync.Mutex
		srv *redistest.Server
		n   int
	)
	return []storeKind{
		{
			name: "memory",
			open: func(t *testing.T) Store {
				m, err := NewMemory(MemoryOptions{MaxBytes: 8 << 20, MaxEntry: 64 << 10})
				if err != nil {
					t.Fatal(err)
				}
				return m
			},
			tooLarge: 64<<10 + 1,
		},
		{
			name: "disk",
			open: func(t *testing.T) Store {
				d, err := NewDisk(DiskOptions{Dir: t.TempDir(), MaxBytes: 8 << 20})
				if err != nil {
					t.Fatal(err)
				}
				return d
			},
			tooLarge: 8 << 20,
		},
		{
			name: "redis",
			open: func(t *testing.T) Store {
				mu.Lock()
				if srv == nil {
					// Started for the parent test, so that it outlives
					// each subtest; the redis subtest checked needRedis.
					srv = redistest.Start(parent, redistest.FreePort(t))
				}
				n++
				prefix := fmt.Sprintf("t%d:", n)
				mu.Unlock()
				r, err := NewRedis(RedisOptions{Addr: srv.Addr(), Prefix: prefix, MaxEntry: 64 << 10, Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				return r
			},
			tooLarge: 64<<10 + 1,
		},
	}
}

func TestContract(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, s Store, k storeKind)
	}{
		{"missing key is ErrNotFound", func(t *testing.T, s Store, _ storeKind) {
			if _, err := s.Get(ctx, []byte("nope")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get = %v, want ErrNotFound", err)
			}
		}},
		{"set then get; bytes in are borrowed, bytes out are owned", func(t *testing.T, s Store, _ storeKind) {
			key, val := []byte("k1"), []byte("hello\x00world")
			mustSet(t, s, key, val, time.Minute)
			key[0], val[0] = 'X', 'X' // the caller reuses its buffers
			got := mustGet(t, s, []byte("k1"))
			if string(got) != "hello\x00world" {
				t.Fatalf("Get = %q", got)
			}
			got[0] = 'Y' // the caller owns what it got
			if got := mustGet(t, s, []byte("k1")); string(got) != "hello\x00world" {
				t.Fatalf("second Get = %q after the first result was changed", got)
			}
		}},
		{"empty value", func(t *testing.T, s Store, _ storeKind) {
			mustSet(t, s, []byte("empty"), nil, time.Minute)
			if got := mustGet(t, s, []byte("empty")); len(got) != 0 {
				t.Fatalf("Get = %q, want empty", got)
			}
		}},
		{"overwrite", func(t *testing.T, s Store, _ storeKind) {
			mustSet(t, s, []byte("k"), []byte("one"), time.Minute)
			mustSet(t, s, []byte("k"), []byte("two, longer"), time.Minute)
			if got := mustGet(t, s, []byte("k")); string(got) != "two, longer" {
				t.Fatalf("Get = %q", got)
			}
		}},
		{"delete", func(t *testing.T, s Store, _ storeKind) {
			mustSet(t, s, []byte("k"), []byte("v"), time.Minute)
			if err := s.Delete(ctx, []byte("k")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, []byte("k")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after Delete = %v", err)
			}
			if err := s.Delete(ctx, []byte("never set")); err != nil {
				t.Fatalf("Delete of a missing key = %v", err)
			}
		}},
		{"expiry", func(t *testing.T, s Store, _ storeKind) {
			mustSet(t, s, []byte("short"), []byte("v"), 100*time.Millisecond)
			mustSet(t, s, []byte("long"), []byte("v"), time.Minute)
			mustGet(t, s, []byte("short"))
			time.Sleep(150 * time.Millisecond)
			if _, err := s.Get(ctx, []byte("short")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after ttl = %v, want ErrNotFound", err)
			}
			mustGet(t, s, []byte("long"))
		}},
		{"too large is refused and removes the older value", func(t *testing.T, s Store, k storeKind) {
			mustSet(t, s, []byte("big"), []byte("small"), time.Minute)
			if err := s.Set(ctx, []byte("big"), make([]byte, k.tooLarge), time.Minute); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Set of %d bytes = %v, want ErrTooLarge", k.tooLarge, err)
			}
			if _, err := s.Get(ctx, []byte("big")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after a refused Set = %v, want ErrNotFound", err)
			}
			if err := s.Set(ctx, make([]byte, MaxKeyLen+1), []byte("v"), time.Minute); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Set with a %d-byte key = %v, want ErrTooLarge", MaxKeyLen+1, err)
			}
			long := bytes.Repeat([]byte("k"), MaxKeyLen)
			mustSet(t, s, long, []byte("v"), time.Minute)
			mustGet(t, s, long)
		}},
		{"ttl must be positive", func(t *testing.T, s Store, _ storeKind) {
			for _, ttl := range []time.Duration{0, -time.Second} {
				if err := s.Set(ctx, []byte("k"), []byte("v"), ttl); err == nil || errors.Is(err, ErrTooLarge) {
					t.Fatalf("Set with ttl %v = %v, want an error", ttl, err)
				}
			}
		}},
		{"concurrent set, get and delete of the same keys", func(t *testing.T, s Store, _ storeKind) {
			testConcurrent(t, s, 8, 200)
		}},
		{"closed", func(t *testing.T, s Store, _ storeKind) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, []byte("k")); !errors.Is(err, ErrClosed) {
				t.Fatalf("Get after Close = %v", err)
			}
			if err := s.Set(ctx, []byte("k"), []byte("v"), time.Minute); !errors.Is(err, ErrClosed) {
				t.Fatalf("Set after Close = %v", err)
			}
			if err := s.Delete(ctx, []byte("k")); !errors.Is(err, ErrClosed) {
				t.Fatalf("Delete after Close = %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
		}},
	}
	for _, k := range kinds(t) {
		t.Run(k.name, func(t *testing.T) {
			if k.name == "redis" {
				redistest.Need(t)
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					s := k.open(t)
					defer s.Close()
					tc.run(t, s, k)
				})
			}
		})
	}
}

// testConcurrent runs workers that set, get and delete a few shared keys.
// Every value names its key and its length, so a Get that saw a torn or
// mixed value is caught; -race catches the rest.
func testConcurrent(t *testing.T, s Store, workers, ops int) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ops; i++ {
				key := []byte(fmt.Sprintf("key%d", i%4))
				switch (w + i) % 5 {
				case 0, 1:
					n := 1 + (w*131+i*17)%3000
					val := []byte(fmt.Sprintf("%s:%05d:", key, n))
					val = append(val, strings.Repeat("x", n)...)
					if err := s.Set(ctx, key, val, time.Minute); err != nil {
						errs <- fmt.Errorf("Set: %w", err)
						return
					}
				case 2:
					if err := s.Delete(ctx, key); err != nil {
						errs <- fmt.Errorf("Delete: %w", err)
						return
					}
				default:
					got, err := s.Get(ctx, key)
					if errors.Is(err, ErrNotFound) {
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("Get: %w", err)
						return
					}
					var n int
					head := fmt.Sprintf("%s:", key)
					if !bytes.HasPrefix(got, []byte(head)) || len(got) < len(head)+6 {
						errs <- fmt.Errorf("Get(%s) = a value of another key or torn: %.40q", key, got)
						return
					}
					fmt.Sscanf(string(got[len(head):len(head)+5]), "%d", &n)
					if len(got) != len(head)+6+n || strings.Trim(string(got[len(head)+6:]), "x") != "" {
						errs <- fmt.Errorf("Get(%s) = a torn value of %d bytes, header says %d", key, len(got), n)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func mustSet(t *testing.T, s Store, key, val []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, val, ttl); err != nil {
		t.Fatalf("Set(%.20q): %v", key, err)
	}
}

func mustGet(t *testing.T, s Store, key []byte) []byte {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%.20q): %v", key, err)
	}
	return v
}
