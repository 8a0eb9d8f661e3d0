package engine

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// cacheStep is one request of a cache scenario and what it must see.
type cacheStep struct {
	advance    time.Duration // the clock moves first
	method     string        // GET by default
	path       string        // /r by default
	hdr        []string      // request header pairs
	wantStatus int           // 200 by default
	wantCS     string        // a substring of Cache-Status
	wantOrigin int           // origin requests so far (-1: not checked)
	wantBody   string        // checked when set
	wantHdr    []string      // "Name: value" the response must have
	noHdr      []string      // names it must not have
	wantUp     []string      // "Name: value" the origin's last request must have
	sleep      time.Duration // real time to wait after the step (background work)
	sameHdr    []string      // header fields whose values must be the first answer's
}

type cacheCase struct {
	name   string
	meta   string // route Metadata members besides "Cache"
	answer func(c *testClock, r originReq, n int) originResp
	steps  []cacheStep
}

func runCacheCase(t *testing.T, tc cacheCase) {
	clk := newTestClock()
	var mu sync.Mutex
	n := 0
	o := startScriptOrigin(t, func(r originReq) originResp {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		return tc.answer(clk, r, k)
	})
	meta := `"Cache": "Memory"`
	if tc.meta != "" {
		meta += ", " + tc.meta
	}
	e := mustEngine(t, oneRoute(`, "Metadata": {`+meta+`}`, o.addr), Options{Now: clk.Now})
	c, _ := serveEngine(t, e)
	var first *fasthttp.Response
	for i, s := range tc.steps {
		clk.advance(s.advance)
		m, p := s.method, s.path
		if m == "" {
			m = "GET"
		}
		if p == "" {
			p = "/r"
		}
		resp := do(t, c, m, p, nil, s.hdr...)
		if first == nil {
			first = resp
		}
		where := func() string {
			return tc.name + " step " + string(rune('0'+i)) + " (" + m + " " + p + ")"
		}
		want := s.wantStatus
		if want == 0 {
			want = 200
		}
		cs := string(resp.Header.Peek("Cache-Status"))
		if resp.StatusCode() != want {
			t.Errorf("%s: status %d, want %d (Cache-Status %q)", where(), resp.StatusCode(), want, cs)
		}
		if s.wantCS != "" && !strings.Contains(cs, s.wantCS) {
			t.Errorf("%s: Cache-Status %q, want it to contain %q", where(), cs, s.wantCS)
		}
		if s.wantOrigin >= 0 {
			if got := o.count(); got != s.wantOrigin {
				t.Errorf("%s: origin got %d requests, want %d (Cache-Status %q)", where(), got, s.wantOrigin, cs)
			}
		}
		if s.wantBody != "" && string(resp.Body()) != s.wantBody {
			t.Errorf("%s: body %q, want %q", where(), resp.Body(), s.wantBody)
		}
		for _, h := range s.wantHdr {
			k, v, _ := strings.Cut(h, ": ")
			if got := string(resp.Header.Peek(k)); got != v {
				t.Errorf("%s: %s is %q, want %q", where(), k, got, v)
			}
		}
		for _, k := range s.sameHdr {
			if got, want := string(resp.Header.Peek(k)), string(first.Header.Peek(k)); got != want || want == "" {
				t.Errorf("%s: %s is %q, the first answer's was %q", where(), k, got, want)
			}
		}
		for _, k := range s.noHdr {
			if v := resp.Header.Peek(k); v != nil {
				t.Errorf("%s: has %s: %q, want none", where(), k, v)
			}
		}
		for _, h := range s.wantUp {
			k, v, _ := strings.Cut(h, ": ")
			if got := o.last().header.Get(k); got != v {
				t.Errorf("%s: origin saw %s %q, want %q", where(), k, got, v)
			}
		}
		if s.sleep > 0 {
			time.Sleep(s.sleep)
		}
	}
}

// fixed answers every request the same, with the clock's Date.
func fixed(status int, body string, hdr ...string) func(*testClock, originReq, int) originResp {
	return func(c *testClock, _ originReq, _ int) originResp {
		return originResp{status: status, body: body, header: append([]string{"Date: " + c.date(0)}, hdr...)}
	}
}

// stored: a second request is answered by the cache.
func storedSteps(cs1 string) []cacheStep {
	return []cacheStep{
		{wantCS: cs1, wantOrigin: 1},
		{advance: time.Second, wantCS: "hit", wantOrigin: 1},
	}
}

// notStored: the second request goes to the origin too; detail names why.
func notStoredSteps(detail string) []cacheStep {
	return []cacheStep{
		{wantCS: "detail=" + detail, wantOrigin: 1},
		{wantCS: "fwd=uri-miss", wantOrigin: 2},
	}
}

func TestCacheStorability(t *testing.T) {
	cases := []cacheCase{
		{name: "max-age", answer: fixed(200, "a", "Cache-Control: max-age=60"), steps: []cacheStep{
			{wantCS: "fwd=uri-miss; stored", wantOrigin: 1, wantBody: "a"},
			// A hit keeps the connection open (a stored block has no
			// Content-Length: it must not read as close-delimited).
			{advance: 10 * time.Second, wantCS: "vkp; hit; ttl=50", wantOrigin: 1, wantBody: "a", wantHdr: []string{"Age: 10", "Content-Length: 1"}, noHdr: []string{"Connection"}},
			{advance: 50 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "the stored Date is served", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "a", header: []string{"Date: " + c.date(-30*time.Second), "Cache-Control: max-age=60"}}
		}, steps: []cacheStep{
			{wantOrigin: 1, sameHdr: []string{"Date"}},
			{advance: 7 * time.Second, wantCS: "hit", wantOrigin: 1, wantHdr: []string{"Age: 37"}, sameHdr: []string{"Date"}},
		}},
		{name: "an Age list counts its first member", answer: fixed(200, "a", "Cache-Control: max-age=3600", "Age: 7200, 0"), steps: notStoredSteps("stale")},
		{name: "CDN-Cache-Control replaces Cache-Control", answer: fixed(200, "a", "Cache-Control: no-store", "CDN-Cache-Control: max-age=60"), steps: storedSteps("stored")},
		{name: "CDN-Cache-Control private", answer: fixed(200, "a", "Cache-Control: max-age=60", "CDN-Cache-Control: private"), steps: notStoredSteps("private")},
		{name: "CDN-Cache-Control max-age over Expires", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "a", header: []string{"Date: " + c.date(0), "Expires: " + c.date(time.Hour), "CDN-Cache-Control: max-age=0", "ETag: \"x\""}}
		}, steps: []cacheStep{{wantOrigin: 1}, {wantCS: "fwd=stale", wantOrigin: 2}}},
		{name: "s-maxage wins over max-age", answer: fixed(200, "a", "Cache-Control: max-age=1, s-maxage=100"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 50 * time.Second, wantCS: "hit", wantOrigin: 1},
		}},
		{name: "max-age wins over Expires", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "a", header: []string{"Date: " + c.date(0), "Expires: " + c.date(-time.Hour), "Cache-Control: max-age=60"}}
		}, steps: storedSteps("stored")},
		{name: "Expires", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "a", header: []string{"Date: " + c.date(0), "Expires: " + c.date(30*time.Second)}}
		}, steps: []cacheStep{
			{wantCS: "stored", wantOrigin: 1},
			{advance: 29 * time.Second, wantCS: "hit", wantOrigin: 1},
			{advance: 2 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "Expires far in the future", answer: fixed(200, "a", "Expires: Sun, 21 Nov 2286 04:46:39 GMT"), steps: storedSteps("stored")},
		{name: "invalid Expires is already expired", answer: fixed(200, "a", "Expires: 0"), steps: notStoredSteps("stale")},
		{name: "two Expires are already expired", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "a", header: []string{"Date: " + c.date(0), "Expires: " + c.date(time.Hour), "Expires: " + c.date(2*time.Hour)}}
		}, steps: notStoredSteps("stale")},
		{name: "no-store", answer: fixed(200, "a", "Cache-Control: max-age=60, no-store"), steps: notStoredSteps("no-store")},
		{name: "private", answer: fixed(200, "a", "Cache-Control: private, max-age=60"), steps: notStoredSteps("private")},
		{name: "private with field names", answer: fixed(200, "a", `Cache-Control: private="x-user", max-age=60`), steps: notStoredSteps("private")},
		{name: "Set-Cookie", answer: fixed(200, "a", "Cache-Control: max-age=60", "Set-Cookie: s=1"), steps: notStoredSteps("set-cookie")},
		{name: "Vary star", answer: fixed(200, "a", "Cache-Control: max-age=60", "Vary: *"), steps: notStoredSteps("vary-star")},
		{name: "no freshness information", answer: fixed(200, "a"), steps: notStoredSteps("no-freshness")},
		{name: "302 needs explicit freshness", answer: fixed(302, "a", "Location: /x", "Last-Modified: Sat, 01 Jan 2000 00:00:00 GMT"), steps: []cacheStep{
			{wantStatus: 302, wantCS: "detail=no-freshness", wantOrigin: 1},
			{wantStatus: 302, wantOrigin: 2},
		}},
		{name: "302 with max-age", answer: fixed(302, "a", "Location: /x", "Cache-Control: max-age=60"), steps: []cacheStep{
			{wantStatus: 302, wantCS: "stored", wantOrigin: 1},
			{wantStatus: 302, wantCS: "hit", wantOrigin: 1, wantHdr: []string{"Location: /x"}},
		}},
		{name: "404 with max-age", answer: fixed(404, "gone", "Cache-Control: max-age=60"), steps: []cacheStep{
			{wantStatus: 404, wantCS: "stored", wantOrigin: 1},
			{wantStatus: 404, wantCS: "hit", wantOrigin: 1, wantBody: "gone"},
		}},
		{name: "206 never stored", answer: fixed(206, "a", "Cache-Control: max-age=60", "Content-Range: bytes 0-0/10"), steps: []cacheStep{
			{wantStatus: 206, wantCS: "detail=partial-content", wantOrigin: 1},
			{wantStatus: 206, wantOrigin: 2},
		}},
		{name: "unknown status with must-understand", answer: fixed(299, "a", "Cache-Control: max-age=60, must-understand, no-store"), steps: []cacheStep{
			{wantStatus: 299, wantCS: "detail=no-store", wantOrigin: 1},
			{wantStatus: 299, wantOrigin: 2},
		}},
		{name: "must-understand overrides no-store for a known status", answer: fixed(200, "a", "Cache-Control: max-age=60, must-understand, no-store"), steps: storedSteps("stored")},
		{name: "heuristic from Last-Modified", answer: func(c *testClock, _ originReq, _ int) originResp {
			// 10% of 1000 s: fresh for 100 s.
			return originResp{body: "a", header: []string{"Date: " + c.date(0), "Last-Modified: " + c.date(-1000*time.Second)}}
		}, steps: []cacheStep{
			{wantCS: "stored", wantOrigin: 1},
			{advance: 99 * time.Second, wantCS: "hit", wantOrigin: 1},
			{advance: 2 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "public without freshness or validators", answer: fixed(200, "a", "Cache-Control: public"), steps: notStoredSteps("no-freshness")},
		{name: "Age counts", answer: fixed(200, "a", "Cache-Control: max-age=60", "Age: 50"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 5 * time.Second, wantCS: "hit", wantOrigin: 1, wantHdr: []string{"Age: 55"}},
			{advance: 6 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "Date in the past counts", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "a", header: []string{"Date: " + c.date(-50*time.Second), "Cache-Control: max-age=60"}}
		}, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 5 * time.Second, wantCS: "hit", wantOrigin: 1, wantHdr: []string{"Age: 55"}},
			{advance: 6 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "stale on arrival", answer: fixed(200, "a", "Cache-Control: max-age=10", "Age: 20"), steps: notStoredSteps("stale")},
		{name: "invalid max-age is stale", answer: fixed(200, "a", "Cache-Control: max-age=soon"), steps: notStoredSteps("stale")},
		{name: "quoted max-age", answer: fixed(200, "a", `Cache-Control: max-age="60"`), steps: storedSteps("stored")},
		{name: "first of two max-age", answer: fixed(200, "a", "Cache-Control: max-age=60, max-age=0"), steps: storedSteps("stored")},
		{name: "no-cache without validators", answer: fixed(200, "a", "Cache-Control: no-cache, max-age=60"), steps: notStoredSteps("no-cache")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCacheCase(t, tc) })
	}
}

func TestCacheRequestDirectives(t *testing.T) {
	fresh := fixed(200, "a", "Cache-Control: max-age=100")
	cases := []cacheCase{
		{name: "max-age=0 revalidates", answer: fresh, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: time.Second, hdr: []string{"Cache-Control", "max-age=0"}, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "max-age above the age is served", answer: fresh, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 5 * time.Second, hdr: []string{"Cache-Control", "max-age=10"}, wantCS: "hit", wantOrigin: 1},
		}},
		{name: "min-fresh", answer: fresh, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 50 * time.Second, hdr: []string{"Cache-Control", "min-fresh=40"}, wantCS: "hit", wantOrigin: 1},
			{hdr: []string{"Cache-Control", "min-fresh=60"}, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "max-stale", answer: fixed(200, "a", "Cache-Control: max-age=10"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, hdr: []string{"Cache-Control", "max-stale=15"}, wantCS: "detail=stale", wantOrigin: 1},
			{hdr: []string{"Cache-Control", "max-stale=5"}, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "max-stale without a value", answer: fixed(200, "a", "Cache-Control: max-age=10"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 50 * time.Second, hdr: []string{"Cache-Control", "max-stale"}, wantCS: "hit", wantOrigin: 1},
		}},
		{name: "must-revalidate refuses max-stale", answer: fixed(200, "a", "Cache-Control: max-age=10, must-revalidate"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, hdr: []string{"Cache-Control", "max-stale"}, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "s-maxage refuses max-stale", answer: fixed(200, "a", "Cache-Control: s-maxage=10"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, hdr: []string{"Cache-Control", "max-stale"}, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "request no-cache goes upstream and stores", answer: fresh, steps: []cacheStep{
			{wantOrigin: 1},
			{hdr: []string{"Cache-Control", "no-cache"}, wantCS: "fwd=request; stored", wantOrigin: 2},
			{wantCS: "hit", wantOrigin: 2},
		}},
		{name: "Pragma no-cache without Cache-Control", answer: fresh, steps: []cacheStep{
			{wantOrigin: 1},
			{hdr: []string{"Pragma", "no-cache"}, wantCS: "fwd=request", wantOrigin: 2},
			{hdr: []string{"Pragma", "no-cache", "Cache-Control", "max-age=100"}, wantCS: "hit", wantOrigin: 2},
		}},
		{name: "request no-store is served but not stored", answer: fresh, steps: []cacheStep{
			{hdr: []string{"Cache-Control", "no-store"}, wantCS: "detail=request-no-store", wantOrigin: 1},
			{wantCS: "stored", wantOrigin: 2},
			{hdr: []string{"Cache-Control", "no-store"}, wantCS: "hit", wantOrigin: 2},
		}},
		{name: "only-if-cached miss is 504", answer: fresh, steps: []cacheStep{
			{hdr: []string{"Cache-Control", "only-if-cached"}, wantStatus: 504, wantCS: "only-if-cached", wantOrigin: 0},
			{wantOrigin: 1},
			{hdr: []string{"Cache-Control", "only-if-cached"}, wantCS: "hit", wantOrigin: 1},
		}},
		{name: "Authorization bypasses by default", answer: fixed(200, "a", "Cache-Control: public, max-age=60"), steps: []cacheStep{
			{hdr: []string{"Authorization", "Bearer x"}, wantCS: "fwd=bypass", wantOrigin: 1},
			{hdr: []string{"Authorization", "Bearer x"}, wantCS: "fwd=bypass", wantOrigin: 2},
			{wantCS: "fwd=uri-miss", wantOrigin: 3},
		}},
		{name: "Authorization through CacheWhen needs public", meta: `"CacheWhen": "Method = 'GET'"`,
			answer: fixed(200, "a", "Cache-Control: max-age=60"), steps: []cacheStep{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "detail=authorization", wantOrigin: 1},
			}},
		{name: "Authorization through CacheWhen with s-maxage", meta: `"CacheWhen": "Method = 'GET'"`,
			answer: fixed(200, "a", "Cache-Control: s-maxage=60"), steps: []cacheStep{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "stored", wantOrigin: 1},
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "hit", wantOrigin: 1},
			}},
		{name: "CacheWhen refuses", meta: `"CacheWhen": "Path = '/other'"`, answer: fresh, steps: []cacheStep{
			{wantCS: "fwd=bypass", wantOrigin: 1},
			{wantCS: "fwd=bypass", wantOrigin: 2},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCacheCase(t, tc) })
	}
}

func TestCacheValidation(t *testing.T) {
	// etagged answers 304 to a matching If-None-Match, and says so in
	// X-Answer.
	etagged := func(cc string) func(*testClock, originReq, int) originResp {
		return func(c *testClock, r originReq, n int) originResp {
			h := []string{"Date: " + c.date(0), "ETag: \"v1\"", "Cache-Control: " + cc, "X-Answer: " + string(rune('0'+n))}
			if r.header.Get("If-None-Match") == `"v1"` {
				return originResp{status: 304, header: h}
			}
			return originResp{body: "body-v1", header: h}
		}
	}
	cases := []cacheCase{
		{name: "stale entry revalidated with 304", answer: etagged("max-age=10"), steps: []cacheStep{
			{wantOrigin: 1, wantHdr: []string{"X-Answer: 1"}},
			{advance: 20 * time.Second, wantCS: "fwd=stale; fwd-status=304; stored", wantOrigin: 2, wantBody: "body-v1",
				wantHdr: []string{"X-Answer: 2"}, wantUp: []string{`If-None-Match: "v1"`}},
			// The 304 refreshed the entry: fresh again, with its headers.
			{advance: 5 * time.Second, wantCS: "hit", wantOrigin: 2, wantBody: "body-v1", wantHdr: []string{"X-Answer: 2", "Age: 5"}},
		}},
		{name: "no-cache entry revalidated every time", answer: etagged("no-cache"), steps: []cacheStep{
			{wantOrigin: 1, wantCS: "stored"},
			{wantCS: "fwd-status=304", wantOrigin: 2, wantBody: "body-v1"},
			{wantCS: "fwd-status=304", wantOrigin: 3, wantBody: "body-v1"},
		}},
		{name: "Last-Modified validator", answer: func(c *testClock, r originReq, n int) originResp {
			lm := "Sat, 01 Jan 2000 00:00:00 GMT"
			h := []string{"Date: " + c.date(0), "Last-Modified: " + lm, "Cache-Control: max-age=10"}
			if r.header.Get("If-Modified-Since") == lm {
				return originResp{status: 304, header: h}
			}
			return originResp{body: "lm", header: h}
		}, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, wantCS: "fwd-status=304", wantOrigin: 2, wantBody: "lm"},
		}},
		{name: "client If-None-Match answered 304 from a fresh entry", answer: etagged("max-age=60"), steps: []cacheStep{
			{wantOrigin: 1},
			{hdr: []string{"If-None-Match", `"v1"`}, wantStatus: 304, wantCS: "hit", wantOrigin: 1, wantHdr: []string{`ETag: "v1"`, "Cache-Control: max-age=60"}},
			{hdr: []string{"If-None-Match", `W/"v1", "v2"`}, wantStatus: 304, wantOrigin: 1},
			{hdr: []string{"If-None-Match", `"v0"`}, wantStatus: 200, wantCS: "hit", wantOrigin: 1, wantBody: "body-v1"},
			{hdr: []string{"If-None-Match", `*`}, wantStatus: 304, wantOrigin: 1},
		}},
		{name: "client If-Modified-Since answered 304", answer: func(c *testClock, _ originReq, _ int) originResp {
			return originResp{body: "x", header: []string{"Date: " + c.date(0), "Last-Modified: Sat, 01 Jan 2000 00:00:00 GMT", "Cache-Control: max-age=60"}}
		}, steps: []cacheStep{
			{wantOrigin: 1},
			{hdr: []string{"If-Modified-Since", "Sun, 02 Jan 2000 00:00:00 GMT"}, wantStatus: 304, wantOrigin: 1},
			{hdr: []string{"If-Modified-Since", "Fri, 31 Dec 1999 00:00:00 GMT"}, wantStatus: 200, wantOrigin: 1, wantBody: "x"},
		}},
		{name: "changed resource replaces the entry", answer: func(c *testClock, r originReq, n int) originResp {
			if n == 1 {
				return originResp{body: "old", header: []string{"Date: " + c.date(0), `ETag: "1"`, "Cache-Control: max-age=10"}}
			}
			return originResp{body: "new", header: []string{"Date: " + c.date(0), `ETag: "2"`, "Cache-Control: max-age=10"}}
		}, steps: []cacheStep{
			{wantBody: "old", wantOrigin: 1},
			{advance: 20 * time.Second, wantBody: "new", wantCS: "fwd=stale; stored", wantOrigin: 2},
			{wantBody: "new", wantCS: "hit", wantOrigin: 2},
		}},
		{name: "304 with another validator does not update", answer: func(c *testClock, r originReq, n int) originResp {
			if n == 1 {
				return originResp{body: "one", header: []string{"Date: " + c.date(0), `ETag: "1"`, "Cache-Control: max-age=10"}}
			}
			return originResp{status: 304, header: []string{"Date: " + c.date(0), `ETag: "9"`, "Cache-Control: max-age=100"}}
		}, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, wantBody: "one", wantCS: "not-updated", wantOrigin: 2},
		}},
		{name: "stale-while-revalidate", answer: func(c *testClock, r originReq, n int) originResp {
			return originResp{body: "v" + string(rune('0'+n)), header: []string{"Date: " + c.date(0), "Cache-Control: max-age=10, stale-while-revalidate=60"}}
		}, steps: []cacheStep{
			{wantBody: "v1", wantOrigin: 1},
			{advance: 20 * time.Second, wantBody: "v1", wantCS: "detail=stale-while-revalidate", wantOrigin: -1, sleep: 300 * time.Millisecond},
			{wantBody: "v2", wantCS: "hit", wantOrigin: 2},
		}},
		{name: "stale-while-revalidate window ends", answer: fixed(200, "a", "Cache-Control: max-age=10, stale-while-revalidate=5"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "stale-if-error", answer: func(c *testClock, r originReq, n int) originResp {
			if n == 1 {
				return originResp{body: "good", header: []string{"Date: " + c.date(0), "Cache-Control: max-age=10, stale-if-error=60"}}
			}
			return originResp{status: 503, body: "down"}
		}, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, wantBody: "good", wantCS: "fwd-status=503; detail=stale-if-error", wantOrigin: 2},
			{advance: 60 * time.Second, wantStatus: 503, wantBody: "down", wantOrigin: 3},
		}},
		{name: "stale-if-error from the request", answer: func(c *testClock, r originReq, n int) originResp {
			if n == 1 {
				return originResp{body: "good", header: []string{"Date: " + c.date(0), "Cache-Control: max-age=10"}}
			}
			return originResp{status: 500, body: "down"}
		}, steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 20 * time.Second, hdr: []string{"Cache-Control", "stale-if-error=30"}, wantBody: "good", wantOrigin: 2},
			{wantStatus: 500, wantOrigin: 3},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCacheCase(t, tc) })
	}
}

func TestCacheVaryAndKeys(t *testing.T) {
	byEncoding := func(c *testClock, r originReq, n int) originResp {
		return originResp{body: "enc=" + r.header.Get("Accept-Encoding"), header: []string{"Date: " + c.date(0), "Cache-Control: max-age=60", "Vary: Accept-Encoding"}}
	}
	cases := []cacheCase{
		{name: "variants", answer: byEncoding, steps: []cacheStep{
			{hdr: []string{"Accept-Encoding", "gzip"}, wantBody: "enc=gzip", wantCS: "fwd=uri-miss; stored", wantOrigin: 1},
			{hdr: []string{"Accept-Encoding", "br"}, wantBody: "enc=br", wantCS: "fwd=vary-miss; stored", wantOrigin: 2},
			{hdr: []string{"Accept-Encoding", "gzip"}, wantBody: "enc=gzip", wantCS: "hit", wantOrigin: 2},
			{hdr: []string{"Accept-Encoding", "br"}, wantBody: "enc=br", wantCS: "hit", wantOrigin: 2},
			{wantBody: "enc=", wantCS: "vary-miss", wantOrigin: 3},
			{wantBody: "enc=", wantCS: "hit", wantOrigin: 3},
			{hdr: []string{"Accept-Encoding", "gzip,  br"}, wantCS: "vary-miss", wantOrigin: 4},
			{hdr: []string{"Accept-Encoding", "gzip, br"}, wantCS: "hit", wantOrigin: 4},
		}},
		{name: "default key has the query", answer: fixed(200, "a", "Cache-Control: max-age=60"), steps: []cacheStep{
			{path: "/r?a=1", wantOrigin: 1},
			{path: "/r?a=2", wantCS: "uri-miss", wantOrigin: 2},
			{path: "/r?a=1", wantCS: "hit", wantOrigin: 2},
		}},
		{name: "default key has the host", answer: fixed(200, "a", "Cache-Control: max-age=60"), steps: []cacheStep{
			{hdr: []string{"Host", "a.example"}, wantOrigin: 1},
			{hdr: []string{"Host", "b.example"}, wantCS: "uri-miss", wantOrigin: 2},
			{hdr: []string{"Host", "A.Example"}, wantCS: "hit", wantOrigin: 2},
		}},
		{name: "CacheKey template", meta: `"CacheKey": "{Path}"`, answer: fixed(200, "a", "Cache-Control: max-age=60"), steps: []cacheStep{
			{path: "/r?a=1", wantOrigin: 1},
			{path: "/r?a=2", wantCS: "hit", wantOrigin: 1},
		}},
		{name: "CacheKey rendering nothing bypasses", meta: `"CacheKey": "{Header('X-Tenant')}"`, answer: fixed(200, "a", "Cache-Control: max-age=60"), steps: []cacheStep{
			{wantCS: "fwd=bypass", wantOrigin: 1},
			{hdr: []string{"X-Tenant", "t1"}, wantCS: "stored", wantOrigin: 2},
			{hdr: []string{"X-Tenant", "t1"}, wantCS: "hit", wantOrigin: 2},
			{hdr: []string{"X-Tenant", "t2"}, wantCS: "uri-miss", wantOrigin: 3},
		}},
		{name: "a range is served from a whole entry", answer: fixed(200, "0123456789", "Cache-Control: max-age=60", `ETag: "e"`), steps: []cacheStep{
			{wantOrigin: 1},
			{hdr: []string{"Range", "bytes=2-4"}, wantStatus: 206, wantBody: "234", wantHdr: []string{"Content-Range: bytes 2-4/10"}, wantOrigin: 1},
			{hdr: []string{"Range", "bytes=7-"}, wantStatus: 206, wantBody: "789", wantOrigin: 1},
			{hdr: []string{"Range", "bytes=-2"}, wantStatus: 206, wantBody: "89", wantOrigin: 1},
			{hdr: []string{"Range", "bytes=8-100"}, wantStatus: 206, wantBody: "89", wantHdr: []string{"Content-Range: bytes 8-9/10"}, wantOrigin: 1},
			{hdr: []string{"Range", "bytes=10-"}, wantStatus: 416, wantHdr: []string{"Content-Range: bytes */10"}, wantOrigin: 1},
			{hdr: []string{"Range", "bytes=0-1,3-4"}, wantStatus: 200, wantBody: "0123456789", wantOrigin: 1},
			{hdr: []string{"Range", "bytes=0-1", "If-Range", `"e"`}, wantStatus: 206, wantBody: "01", wantOrigin: 1},
			{hdr: []string{"Range", "bytes=0-1", "If-Range", `"other"`}, wantStatus: 200, wantBody: "0123456789", wantOrigin: 1},
		}},
		{name: "HEAD is answered from GET's entry and stores nothing", answer: fixed(200, "abc", "Cache-Control: max-age=60"), steps: []cacheStep{
			{method: "HEAD", wantCS: "uri-miss", wantOrigin: 1},
			{wantCS: "uri-miss; stored", wantOrigin: 2},
			{method: "HEAD", wantCS: "hit", wantOrigin: 2, wantHdr: []string{"Content-Length: 3"}},
		}},
		{name: "HEAD with a {Method} key uses GET's entry", meta: `"CacheKey": "{Method}_{Path}"`, answer: fixed(200, "abc", "Cache-Control: max-age=60"), steps: []cacheStep{
			{wantOrigin: 1},
			{method: "HEAD", wantCS: "hit", wantOrigin: 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCacheCase(t, tc) })
	}
}

func TestCacheInvalidation(t *testing.T) {
	answer := func(c *testClock, r originReq, n int) originResp {
		h := []string{"Date: " + c.date(0), "Cache-Control: max-age=60"}
		switch {
		case r.method == "POST" && r.target == "/r":
			return originResp{status: 201, header: []string{"Location: /other"}}
		case r.method == "POST":
			return originResp{status: 500}
		case r.method == "PUT":
			return originResp{status: 204, header: []string{"Content-Location: http://elsewhere.example/r"}}
		}
		return originResp{body: r.target, header: h}
	}
	runCacheCase(t, cacheCase{name: "unsafe methods", answer: answer, steps: []cacheStep{
		{wantOrigin: 1},
		{path: "/other", wantOrigin: 2},
		{wantCS: "hit", wantOrigin: 2},
		{path: "/other", wantCS: "hit", wantOrigin: 2},
		{method: "POST", wantStatus: 201, wantOrigin: 3},
		// The POST invalidated its URI and its Location.
		{wantCS: "uri-miss", wantOrigin: 4},
		{path: "/other", wantCS: "uri-miss", wantOrigin: 5},
		// An error answer invalidates nothing.
		{method: "POST", path: "/other", wantStatus: 500, wantOrigin: 6},
		{path: "/other", wantCS: "hit", wantOrigin: 6},
		// A Content-Location on another host is not this cache's.
		{method: "PUT", wantStatus: 204, wantOrigin: 7},
		{wantCS: "uri-miss", wantOrigin: 8},
		{path: "/other", wantCS: "hit", wantOrigin: 8},
		// OPTIONS is safe: it invalidates nothing and is not cached.
		{method: "OPTIONS", wantOrigin: 9},
		{wantCS: "hit", wantOrigin: 9},
	}})
}

// Concurrent misses on one key make one upstream request; the others
// get its answer.
func TestCacheCollapsesMisses(t *testing.T) {
	clk := newTestClock()
	o := startScriptOrigin(t, func(r originReq) originResp {
		return originResp{body: "shared", delay: 300 * time.Millisecond, header: []string{"Date: " + clk.date(0), "Cache-Control: max-age=60"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
	c, _ := serveEngine(t, e)
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp := do(t, c, "GET", "/r", nil)
			if string(resp.Body()) != "shared" {
				t.Errorf("request %d: body %q", i, resp.Body())
			}
			statuses[i] = string(resp.Header.Peek("Cache-Status"))
		}(i)
	}
	wg.Wait()
	if got := o.count(); got != 1 {
		t.Fatalf("origin got %d requests for %d concurrent misses, want 1: %q", got, n, statuses)
	}
	collapsed := 0
	for _, s := range statuses {
		if strings.Contains(s, "collapsed") {
			collapsed++
		}
	}
	if collapsed != n-1 {
		t.Fatalf("%d answers say collapsed, want %d: %q", collapsed, n-1, statuses)
	}
}

// An answer that cannot be shared sends the waiters upstream, and then
// marks the key so that later requests do not queue behind one another.
func TestCacheUncacheableDoesNotSerialize(t *testing.T) {
	o := startScriptOrigin(t, func(r originReq) originResp {
		return originResp{body: "private", delay: 200 * time.Millisecond, header: []string{"Cache-Control: private"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{})
	c, _ := serveEngine(t, e)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); do(t, c, "GET", "/r", nil) }()
	}
	wg.Wait()
	if got := o.count(); got != 4 {
		t.Fatalf("origin got %d requests, want 4 (each its own answer)", got)
	}
	// Marked: 4 more at once take one origin delay, not four.
	start := time.Now()
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); do(t, c, "GET", "/r", nil) }()
	}
	wg.Wait()
	if d := time.Since(start); d > 700*time.Millisecond {
		t.Fatalf("4 requests for an uncacheable key took %v: they queued behind one another", d)
	}
}

// Large bodies stream to the client and are stored once whole; one over
// CacheMaximumBodySize, or one cut short, is not.
func TestCacheStreamedBodies(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	o := startScriptOrigin(t, func(r originReq) originResp {
		h := []string{"Cache-Control: max-age=60"}
		switch r.target {
		case "/cut":
			return originResp{body: big, header: h, cut: 300 << 10}
		}
		return originResp{body: big, header: h}
	})
	e := mustEngine(t, `{"ReverseProxy": {
	  "Routes": {
	    "big": {"ClusterId": "c", "Match": {"Paths": ["/big", "/cut"]}, "Metadata": {"Cache": "Memory"}},
	    "small": {"ClusterId": "c", "Match": {"Paths": ["/small"]}, "Metadata": {"Cache": "Memory", "CacheMaximumBodySize": "512KiB"}}},
	  "Clusters": {"c": {"Destinations": [{"Address": "http://`+o.addr+`"}]}}}}`, Options{})
	c, addr := serveEngine(t, e)
	for i := 0; i < 2; i++ {
		resp := do(t, c, "GET", "/big", nil)
		if string(resp.Body()) != big {
			t.Fatalf("/big request %d: body of %d bytes differs", i, len(resp.Body()))
		}
	}
	if got := o.count(); got != 1 {
		t.Fatalf("origin got %d requests for /big, want 1 (stored once streamed)", got)
	}
	for i := 0; i < 2; i++ {
		resp := do(t, c, "GET", "/small", nil)
		if !strings.Contains(string(resp.Header.Peek("Cache-Status")), "too-large") || len(resp.Body()) != len(big) {
			t.Fatalf("/small: Cache-Status %q, %d bytes", resp.Header.Peek("Cache-Status"), len(resp.Body()))
		}
	}
	if got := o.count(); got != 3 {
		t.Fatalf("origin got %d requests, want 3: a body over CacheMaximumBodySize is not stored", got)
	}
	// A body cut short fails the client and is not stored.
	c.MaxIdemponentCallAttempts = 1
	for i := 0; i < 2; i++ {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + addr + "/cut")
		resp := fasthttp.AcquireResponse()
		err := c.Do(req, resp)
		if err == nil && len(resp.Body()) == len(big) {
			t.Fatalf("/cut: whole body despite the origin cutting it")
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	if got := o.count(); got != 5 {
		t.Fatalf("origin got %d requests, want 5: a cut body is never stored", got)
	}
}

func TestCacheForceAndCacheTime(t *testing.T) {
	cases := []cacheCase{
		{name: "ForceCache stores without headers for 10s", meta: `"ForceCache": true`, answer: fixed(200, "a"), steps: []cacheStep{
			{wantCS: "stored", wantOrigin: 1},
			{advance: 9 * time.Second, wantCS: "hit", wantOrigin: 1},
			{advance: 2 * time.Second, wantCS: "fwd=", wantOrigin: 2},
		}},
		{name: "ForceCache stores private", meta: `"ForceCache": "true"`, answer: fixed(200, "a", "Cache-Control: private, no-store"), steps: storedSteps("stored")},
		{name: "ForceCache refuses Set-Cookie", meta: `"ForceCache": 1`, answer: fixed(200, "a", "Set-Cookie: a=b"), steps: notStoredSteps("set-cookie")},
		{name: "ForceCache only 200", meta: `"ForceCache": true`, answer: fixed(404, "a"), steps: []cacheStep{
			{wantStatus: 404, wantCS: "detail=status", wantOrigin: 1},
		}},
		{name: "CacheTime overrides max-age", meta: `"CacheTime": "00:01:00"`, answer: fixed(200, "a", "Cache-Control: max-age=5"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 30 * time.Second, wantCS: "hit", wantOrigin: 1},
			{advance: 31 * time.Second, wantCS: "fwd=stale", wantOrigin: 2},
		}},
		{name: "CacheTime with ForceCache", meta: `"ForceCache": true, "CacheTime": "30s"`, answer: fixed(200, "a"), steps: []cacheStep{
			{wantOrigin: 1},
			{advance: 29 * time.Second, wantCS: "hit", wantOrigin: 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCacheCase(t, tc) })
	}
}

func TestCacheConfigErrors(t *testing.T) {
	for _, tc := range []struct{ meta, want string }{
		{`"Cache": "Floppy"`, `Metadata.Cache: "Floppy" is not a cache store`},
		{`"CacheKey": "{Nope}"`, `Metadata.CacheKey:`},
		{`"CacheKey": ""`, `Metadata.CacheKey:`},
		{`"Cache": "Memory", "CacheWhen": "Method = "`, `Metadata.CacheWhen:`},
		{`"Cache": "Memory", "CacheMaximumBodySize": "0"`, `Metadata.CacheMaximumBodySize: "0": must be more than 0`},
		{`"Cache": "Memory", "CacheMaximumBodySize": "lots"`, `Metadata.CacheMaximumBodySize:`},
		{`"Cache": "Memory", "ForceCache": "maybe"`, `Metadata.ForceCache: want true or false`},
		{`"Cache": "Memory", "CacheTime": "-00:00:05"`, `Metadata.CacheTime:`},
	} {
		_, err := ParseConfig([]byte(oneRoute(`, "Metadata": {`+tc.meta+`}`, "127.0.0.1:1")))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a problem containing %q", tc.meta, err, tc.want)
		}
	}
	// Redis without --redis is a problem when the engine is built.
	_, err := New(mustConfig(t, oneRoute(`, "Metadata": {"Cache": "Redis"}`, "127.0.0.1:1")), Options{})
	if err == nil || !strings.Contains(err.Error(), "--redis") {
		t.Fatalf("Cache Redis without a Redis server: %v", err)
	}
}

// A slow client downloading a large body that is being stored does not
// hold the other requests for its key: they go upstream themselves.
func TestCacheSlowFillDoesNotHoldOthers(t *testing.T) {
	// More than the sockets' buffers hold, so the slow client's stream
	// cannot finish.
	big := strings.Repeat("x", 40<<20)
	o := startScriptOrigin(t, func(r originReq) originResp {
		return originResp{body: big, header: []string{"Cache-Control: max-age=60"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{})
	c, addr := serveEngine(t, e)
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	if _, err := slow.Read(buf); err != nil { // the header is out; now it stops reading
		t.Fatal(err)
	}
	// Held behind the slow client it would wait the route's Timeout (5
	// minutes): the read timeout fails the request long before.
	c.ReadTimeout = 20 * time.Second
	resp := do(t, c, "GET", "/big", nil, "Host", "x")
	if len(resp.Body()) != len(big) || strings.Contains(string(resp.Header.Peek("Cache-Status")), "collapsed") {
		t.Fatalf("second client: %d bytes, Cache-Status %q", len(resp.Body()), resp.Header.Peek("Cache-Status"))
	}
	if o.count() != 2 {
		t.Fatalf("origin got %d requests, want 2", o.count())
	}
}

func TestCacheMetrics(t *testing.T) {
	o := startScriptOrigin(t, func(r originReq) originResp {
		return originResp{body: "abcd", header: []string{"Cache-Control: max-age=60"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{})
	c, _ := serveEngine(t, e)
	for i := 0; i < 3; i++ {
		do(t, c, "GET", "/m", nil)
	}
	do(t, c, "GET", "/m", nil, "Authorization", "x")
	var b bytes.Buffer
	e.WriteMetrics(&b)
	for _, want := range []string{
		`vkp_cache_requests_total{route="r",result="hit"} 2`,
		`vkp_cache_requests_total{route="r",result="miss"} 1`,
		`vkp_cache_requests_total{route="r",result="stored"} 1`,
		`vkp_cache_requests_total{route="r",result="bypass"} 1`,
		`vkp_cache_hit_bytes_total{route="r"} 8`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
