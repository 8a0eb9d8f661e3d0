package engine

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

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
	get := func(k string) []byte {
		raw, _, _ := sh.get([]byte(k), later)
		return raw
	}
	if get("n4095") == nil && get("n0") == nil {
		t.Fatal("no new copy was kept after the old ones expired")
	}
	if get("k0") != nil {
		t.Fatal("an expired copy was served")
	}
	// A write in flight between a Get and its add keeps the copy out.
	ep := sh.now()
	sh.drop([]byte("w"))
	sh.add([]byte("w"), raw[:10], ep, later)
	if get("w") != nil {
		t.Fatal("a copy read before a write was kept")
	}
}

// A hit served from a hot copy's decoded form (the header parsed once for
// all its hits) is the same on the wire, byte for byte, as a hit parsed
// from the store's copy: field order, spelling, repeated fields, status
// and body; and a conditional hit still answers 304 from it.
func TestCacheHotDecodedSameAnswer(t *testing.T) {
	clk := newTestClock()
	o := startScriptOrigin(t, func(r originReq) originResp {
		return originResp{status: 203, body: "decoded once", header: []string{
			"Date: " + clk.date(-30*time.Second), "x-lower: a", "Link: <a>; rel=preload", "Cache-Control: max-age=60",
			"Link: <b>; rel=preload", "ETag: \"v1\"", "Content-Type: text/x-odd",
		}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
	_, addr := serveEngine(t, e)
	get := func(extra string) string {
		t.Helper()
		c := dialTest(t, addr)
		if _, err := io.WriteString(c, "GET /r HTTP/1.1\r\nHost: x\r\n"+extra+"Connection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	get("") // stored
	fromStore := get("")
	if !strings.Contains(fromStore, "Cache-Status: vkp; hit") || !strings.HasSuffix(fromStore, "decoded once") {
		t.Fatalf("second GET is not a hit:\n%s", fromStore)
	}
	if want := "Date: " + clk.date(-30*time.Second) + "\r\n"; !strings.Contains(fromStore, want) {
		t.Fatalf("a hit lost the stored %q:\n%s", want, fromStore)
	}
	for i := range 3 { // the first decodes the copy, the others use it
		if got := get(""); got != fromStore {
			t.Fatalf("hot hit %d differs from the store's:\n%s\nwant\n%s", i, got, fromStore)
		}
	}
	// The decoded copy is counted against the hot budget, and given back
	// when the copy goes.
	sh := e.reg.stores.sharing("memory")
	if _, d := hotCounted(t, sh); d == 0 {
		t.Fatal("no decoded copy counted")
	}
	clk.advance(time.Duration(hotHold))
	get("") // the copy expired: read from the store again
	if _, d := hotCounted(t, sh); d != 0 {
		t.Fatalf("an expired decoded copy still counted: %d", d)
	}
	if got := get("If-None-Match: \"v1\"\r\n"); !strings.HasPrefix(got, "HTTP/1.1 304 ") || !strings.Contains(strings.ToLower(got), "etag: \"v1\"") || strings.Contains(got, "decoded once") {
		t.Fatalf("conditional hot hit:\n%s", got)
	}
	if n := o.count(); n != 1 {
		t.Fatalf("the origin saw %d requests, want 1", n)
	}
}

// Hits on many connections at once decode and publish a hot copy while
// others read it (run under -race).
func TestCacheHotDecodedConcurrent(t *testing.T) {
	o := startScriptOrigin(t, func(r originReq) originResp {
		return originResp{body: "shared", header: []string{"Cache-Control: max-age=60", "X-A: 1"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{})
	c, _ := serveEngine(t, e)
	do(t, c, "GET", "/r", nil)
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			for range 50 {
				req, resp := &fasthttp.Request{}, &fasthttp.Response{}
				req.SetRequestURI("http://" + c.Addr + "/r")
				err := c.Do(req, resp)
				switch {
				case err != nil:
					errs <- err.Error()
					return
				case string(resp.Body()) != "shared" || string(resp.Header.Peek("X-A")) != "1" || len(resp.Header.Peek("Date")) == 0:
					errs <- "answer " + resp.String()
					return
				}
			}
			errs <- ""
		}()
	}
	for range 8 {
		if s := <-errs; s != "" {
			t.Fatal(s)
		}
	}
	if n := o.count(); n != 1 {
		t.Fatalf("the origin saw %d requests, want 1", n)
	}
}

// hotCounted checks that each hot shard's byte count is what it holds and
// returns the bytes of all shards and those of the decoded copies among
// them.
func hotCounted(t *testing.T, sh *sharedHits) (bytes, decoded int) {
	t.Helper()
	for i := range sh.hot {
		hs := &sh.hot[i]
		hs.mu.Lock()
		sum := 0
		for k, h := range hs.m {
			sum += h.size() + len(k)
			if h.dec != nil {
				decoded += h.decN
			}
		}
		if sum != hs.bytes {
			t.Errorf("shard %d counts %d bytes, holds %d", i, hs.bytes, sum)
		}
		bytes += hs.bytes
		hs.mu.Unlock()
	}
	return bytes, decoded
}
