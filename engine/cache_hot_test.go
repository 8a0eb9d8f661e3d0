package engine

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vkp-proxy/vkp/store"
)

// countingStore counts the Gets that reach a store.
type countingStore struct {
	store.Store
	gets *atomic.Int64
}

func (s countingStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key)
}

// The hits of a key in the hold after a store read share that copy: the
// store is read about once per hotHold, a write or an invalidation by vkp
// drops the copy at once, and what a hot copy serves is still checked for
// freshness.
func TestCacheHotCopy(t *testing.T) {
	clk := newTestClock()
	var version atomic.Int64
	o := startScriptOrigin(t, func(r originReq) originResp {
		if r.method == "POST" {
			return originResp{status: 204}
		}
		v := version.Add(1)
		return originResp{body: "version " + strconv.FormatInt(v, 10), header: []string{"Date: " + clk.date(0), "Cache-Control: max-age=5"}}
	})
	var gets atomic.Int64
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now, CacheStores: map[string]func() (store.Store, error){
		"memory": func() (store.Store, error) {
			m, err := store.NewMemory(store.MemoryOptions{MaxBytes: 16 << 20, MaxEntry: 1 << 20})
			return countingStore{m, &gets}, err
		},
	}})
	c, _ := serveEngine(t, e)
	get := func(want, status string) {
		t.Helper()
		resp := do(t, c, "GET", "/r", nil)
		if b, cs := string(resp.Body()), string(resp.Header.Peek("Cache-Status")); b != want || !strings.Contains(cs, status) {
			t.Fatalf("GET: %q, Cache-Status %q; want %q, %q", b, cs, want, status)
		}
	}
	get("version 1", "stored")
	before := gets.Load()
	for range 5 {
		get("version 1", "hit")
	}
	if n := gets.Load() - before; n != 1 {
		t.Fatalf("five hits in the hold read the store %d times, want 1", n)
	}

	clk.advance(time.Duration(hotHold))
	before = gets.Load()
	get("version 1", "hit")
	get("version 1", "hit")
	if n := gets.Load() - before; n != 1 {
		t.Fatalf("two hits after the hold read the store %d times, want 1", n)
	}

	// An invalidation drops the hot copy: the next GET goes upstream.
	if s := do(t, c, "POST", "/r", []byte("x")).StatusCode(); s != 204 {
		t.Fatalf("POST: %d", s)
	}
	get("version 2", "stored")
	get("version 2", "hit")

	// A hot copy past its freshness is revalidated, not served as fresh;
	// the new answer replaces it.
	clk.advance(6 * time.Second)
	get("version 3", "fwd=stale")
	get("version 3", "hit")
}

// Hot copies stay within their byte and key bounds whatever is added.
func TestCacheHotCopyBounds(t *testing.T) {
	sh := newSharedHits()
	now := time.Now().UnixNano()
	raw := make([]byte, 64<<10)
	for i := range 4096 {
		sh.add([]byte("k"+strconv.Itoa(i)), raw, sh.now(), now)
	}
	total, keys := 0, 0
	for i := range sh.hot {
		hs := &sh.hot[i]
		if hs.bytes > hotBudget/hotShards || len(hs.m) > hotKeys {
			t.Fatalf("shard %d holds %d bytes, %d keys", i, hs.bytes, len(hs.m))
		}
		total += hs.bytes
		keys += len(hs.m)
	}
	if total == 0 || total > hotBudget {
		t.Fatalf("hot copies hold %d bytes in all (budget %d)", total, hotBudget)
	}
	// Once expired, copies give way to new ones.
	later := now + hotHold
	for i := range 4096 {
		sh.add([]byte("n"+strconv.Itoa(i)), raw, sh.now(), later)
	}
	if got := sh.get([]byte("n4095"), later); got == nil && sh.get([]byte("n0"), later) == nil {
		t.Fatal("no new copy was kept after the old ones expired")
	}
	if got := sh.get([]byte("k0"), later); got != nil {
		t.Fatal("an expired copy was served")
	}
	// A write in flight between a Get and its add keeps the copy out.
	ep := sh.now()
	sh.drop([]byte("w"))
	sh.add([]byte("w"), raw[:10], ep, later)
	if sh.get([]byte("w"), later) != nil {
		t.Fatal("a copy read before a write was kept")
	}
}
