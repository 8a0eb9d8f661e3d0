//go:build !race

package engine

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A hot copy kept in a shard with no room left for its decoded form is
// still hit without allocating: the first hit's refused decode is not
// built again by every later hit of the copy.
func TestReview7HotCopyNoRoomToDecodeAllocatesNothing(t *testing.T) {
	body := make([]byte, 4<<10)
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=600")
		ctx.Response.Header.Set("ETag", `"x"`)
		ctx.Response.Header.Set("X-A", "1")
		ctx.Response.Header.Set("X-B", "2")
		ctx.SetBody(body)
	})
	clock := time.Now()
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{Now: func() time.Time { return clock }})
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl) // stored
	proxiedGET(e, ctx, tmpl) // read from the store: a hot copy
	// Fill the copy's shard so that the copy stays but its decoded form
	// (decodedSize: some hundred bytes) has no room.
	sh := e.reg.stores.sharing("memory")
	key := []byte("r#GET api.example.com/api/items?id=42")
	hs := sh.shard(key)
	now := clock.UnixNano()
	for i := 0; ; i++ {
		hs.mu.Lock()
		room := hotBudget/hotShards - hs.bytes
		hs.mu.Unlock()
		if room < 32 {
			break
		}
		k := []byte("filler" + strconv.Itoa(i))
		if sh.shard(k) != hs {
			continue
		}
		n := min(room-len(k)-16, shareMin-1)
		if n <= 0 {
			break
		}
		sh.add(k, make([]byte, n), sh.now(), now)
	}
	if raw, _, hot := sh.get(key, now); raw == nil || !hot {
		t.Fatal("the hot copy was not kept")
	}
	proxiedGET(e, ctx, tmpl) // the copy's first hit: its decode is refused
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(cs, "vkp; hit") || len(ctx.Response.Body()) != len(body) {
		t.Fatalf("hit: Cache-Status %q, %d bytes", cs, len(ctx.Response.Body()))
	}
	if _, d := hotCounted(t, sh); d != 0 {
		t.Fatalf("a decoded copy was kept in a full shard: %d bytes", d)
	}
	if n := testing.AllocsPerRun(200, func() { proxiedGET(e, ctx, tmpl) }); n != 0 {
		t.Fatalf("a hit of a hot copy whose decoded form has no room allocates %.2f times", n)
	}
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(cs, "vkp; hit") || string(ctx.Response.Header.Peek("X-B")) != "2" {
		t.Fatalf("hit: Cache-Status %q\n%s", cs, ctx.Response.Header.String())
	}
}

// A revalidation answered with the stale entry (here a 304 about another
// response) allocates only the fetch and its fill (and the fill's
// channel): the copy of the response header's server settings that the
// stale answer gets back (fetch.srv) is pooled.
func TestReview7StaleAnswerAllocations(t *testing.T) {
	origin := startOrigin(t, func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Peek("If-None-Match")) > 0 {
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			ctx.Response.Header.Set("ETag", `"other"`)
			return
		}
		ctx.Response.Header.Set("Cache-Control", "max-age=1")
		ctx.Response.Header.Set("ETag", `"x"`)
		ctx.SetBody([]byte("hello"))
	})
	clock := time.Now()
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{Now: func() time.Time { return clock }})
	ctx, tmpl := newProxyCtx()
	proxiedGET(e, ctx, tmpl) // stored
	clock = clock.Add(5 * time.Second)
	proxiedGET(e, ctx, tmpl)
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.Contains(cs, "detail=not-updated") || string(ctx.Response.Body()) != "hello" {
		t.Fatalf("not answered stale: Cache-Status %q", cs)
	}
	if n := testing.AllocsPerRun(200, func() { proxiedGET(e, ctx, tmpl) }); n > 3 {
		t.Fatalf("a revalidation answered with the stale entry allocates %.2f times, want 3 (fetch, fill, its channel)", n)
	}
}
