package engine

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A 304 without Date refreshes the stored response as of its arrival (RFC
// 9110 section 6.6.1: a recipient with a clock dates a Date-less response
// it caches or forwards; RFC 9111 section 4.3.4: the 304's fields replace
// the stored ones). The refreshed entry is fresh again for its lifetime;
// with the stored Date kept it would count as old as that Date and be
// stale at once, so that every later request went upstream.
func TestReview7DatelessNotModifiedRefreshes(t *testing.T) {
	clk := newTestClock()
	start := clk.date(0)
	o := startScriptOrigin(t, func(r originReq) originResp {
		if r.header.Get("If-None-Match") == `"v1"` {
			return originResp{status: 304, header: []string{"ETag: \"v1\"", "X-Refreshed: yes"}}
		}
		return originResp{body: "good", header: []string{"Date: " + start, "ETag: \"v1\"", "Cache-Control: max-age=10"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
	_, addr := serveEngine(t, e)
	if got := rawGet(t, addr, "/r", ""); !strings.Contains(got, "stored") {
		t.Fatalf("not stored:\n%s", got)
	}
	clk.advance(12 * time.Second) // stale
	refreshedAt := "\r\nDate: " + clk.date(0) + "\r\n"
	got := rawGet(t, addr, "/r", "")
	if !strings.Contains(got, "fwd-status=304; stored") || !strings.HasSuffix(got, "\r\n\r\ngood") {
		t.Fatalf("not refreshed:\n%s", got)
	}
	if !strings.Contains(got, refreshedAt) || !strings.Contains(got, "\r\nAge: 0\r\n") || !strings.Contains(got, "X-Refreshed: yes") {
		t.Fatalf("the refreshed answer is not dated %q, age 0:\n%s", refreshedAt, got)
	}
	clk.advance(2 * time.Second)
	for i := range 3 { // a read from the store, then hot hits
		hit := rawGet(t, addr, "/r", "")
		if !strings.Contains(hit, "Cache-Status: vkp; hit") || !strings.Contains(hit, refreshedAt) || !strings.Contains(hit, "\r\nAge: 2\r\n") {
			t.Fatalf("GET %d after the refresh is not a fresh hit dated %q:\n%s", i, refreshedAt, hit)
		}
	}
	if n := o.count(); n != 2 {
		t.Fatalf("the origin saw %d requests, want 2", n)
	}
}

// rawReq sends one raw request on a fresh connection and returns the
// answer's bytes (the connection closes after it: the request says so or
// is HTTP/1.0 without keep-alive; a keep-alive one is read to its length).
func rawReq(t *testing.T, addr, req string) string {
	t.Helper()
	c := dialTest(t, addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second)) //nolint:errcheck
	b, _ := io.ReadAll(c)
	return string(b)
}

// Each kind of request answered from a hot copy gets the same bytes from
// the copy's decoded form as from the store's copy parsed: HTTP/1.0 with
// and without keep-alive, HEAD, Range, If-Range, a conditional 304, a
// Vary variant, on a route with CORS (whose fields a hit gets after the
// cache's).
func TestReview7DecodedSameAsParsedEveryRequest(t *testing.T) {
	clk := newTestClock()
	o := startScriptOrigin(t, func(r originReq) originResp {
		h := []string{"Date: " + clk.date(-5*time.Second), "Cache-Control: max-age=600", "ETag: \"e1\"",
			"Last-Modified: " + clk.date(-time.Hour), "X-Odd:  spaced ", "Server: origin/1"}
		if r.target == "/v" {
			h = append(h, "Vary: Accept-Language", "Content-Language: "+r.header.Get("Accept-Language"))
		}
		return originResp{body: "0123456789" + r.target, header: h}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory", "Access-Control-Allow-Origin": "*"}`, o.addr), Options{Now: clk.Now})
	_, addr := serveEngine(t, e)
	for _, tc := range []struct{ name, target, req string }{
		{"1.0", "/r", "GET /r HTTP/1.0\r\nHost: x\r\n\r\n"},
		{"1.0 keep-alive", "/r", "GET /r HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /r HTTP/1.0\r\nHost: x\r\n\r\n"},
		{"HEAD", "/r", "HEAD /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"Range", "/r", "GET /r HTTP/1.1\r\nHost: x\r\nRange: bytes=2-5\r\nConnection: close\r\n\r\n"},
		{"If-Range", "/r", "GET /r HTTP/1.1\r\nHost: x\r\nRange: bytes=-3\r\nIf-Range: \"e1\"\r\nConnection: close\r\n\r\n"},
		{"If-Range other", "/r", "GET /r HTTP/1.1\r\nHost: x\r\nRange: bytes=-3\r\nIf-Range: \"e2\"\r\nConnection: close\r\n\r\n"},
		{"304", "/r", "GET /r HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e1\"\r\nConnection: close\r\n\r\n"},
		{"CORS", "/r", "GET /r HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\nConnection: close\r\n\r\n"},
		{"variant", "/v", "GET /v HTTP/1.1\r\nHost: x\r\nAccept-Language: fr\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rawReq(t, addr, "GET "+tc.target+" HTTP/1.1\r\nHost: x\r\nAccept-Language: fr\r\nConnection: close\r\n\r\n") // stored (or already)
			clk.advance(time.Duration(hotHold))                                                                          // any hot copy expires
			parsed := rawReq(t, addr, tc.req)                                                                            // read from the store
			if !strings.Contains(parsed, "Cache-Status: vkp; hit") {
				t.Fatalf("not a hit:\n%s", parsed)
			}
			for i := range 3 { // the copy's first hit (decodes it), then its decoded form
				if got := rawReq(t, addr, tc.req); got != parsed {
					t.Fatalf("hot hit %d differs from the parsed one:\n%s\n---want---\n%s", i, got, parsed)
				}
			}
		})
	}
	if _, d := hotCounted(t, e.reg.stores.sharing("memory")); d == 0 {
		t.Fatal("no copy was decoded")
	}
}

// stale-if-error answers with the stale entry when the upstream's error
// streams (a chunked body still arriving), for an HTTP/1.0 client too:
// the connection takeover that would stream the error to it
// (streamToHTTP10) is called off, instead of sending the upstream's 500
// in place of the answer the cache chose.
func TestReview7StaleIfErrorReplacesStreamedErrorHTTP10(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		t.Run(proto, func(t *testing.T) {
			clk := newTestClock()
			var n atomic.Int64
			origin := rawOrigin(t, func(_ int, c net.Conn, br *bufio.Reader) {
				tp := textproto.NewReader(br)
				for {
					if _, err := tp.ReadLine(); err != nil {
						return
					}
					if _, err := tp.ReadMIMEHeader(); err != nil {
						return
					}
					if n.Add(1) == 1 {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nDate: "+clk.date(0)+"\r\nCache-Control: max-age=1, stale-if-error=60\r\nContent-Length: 4\r\n\r\ngood") //nolint:errcheck
						continue
					}
					// The rest of the body comes later: the answer streams.
					io.WriteString(c, "HTTP/1.1 500 Bad\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nERROR\r\n") //nolint:errcheck
					time.Sleep(200 * time.Millisecond)
					io.WriteString(c, "0\r\n\r\n") //nolint:errcheck
				}
			})
			e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, origin), Options{Now: clk.Now})
			_, addr := serveEngine(t, e)
			rawGet(t, addr, "/r", "") // stored
			clk.advance(5 * time.Second)
			got := rawReq(t, addr, "GET /r "+proto+"\r\nHost: x\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.Contains(got, "detail=stale-if-error") || !strings.HasSuffix(got, "\r\n\r\ngood") {
				t.Fatalf("not answered with the stale entry:\n%s", got)
			}
			if n.Load() != 2 {
				t.Fatalf("the origin saw %d requests, want 2", n.Load())
			}
		})
	}
}

// A 304 about the stored response that makes it uncacheable (it sets a
// cookie, or says no-store) removes the entry, and the client, who asked
// for no 304, gets the response as the 304 updated it (RFC 9111 section
// 4.3.4), the cookie included: not the stored one as if the 304 were about
// another response ("not-updated").
func TestReview7NotModifiedMakingUncacheableAnswersUpdated(t *testing.T) {
	for _, tc := range []struct{ name, field, detail string }{
		{"set-cookie", "Set-Cookie: s=1", "detail=set-cookie"},
		{"no-store", "Cache-Control: no-store", "detail=no-store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newTestClock()
			o := startScriptOrigin(t, func(r originReq) originResp {
				if r.header.Get("If-None-Match") != "" {
					return originResp{status: 304, header: []string{"Date: " + clk.date(0), "ETag: \"v1\"", tc.field, "X-New: 1"}}
				}
				return originResp{body: "good", header: []string{"Date: " + clk.date(0), "ETag: \"v1\"", "Cache-Control: max-age=1", "X-New: 0"}}
			})
			e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
			_, addr := serveEngine(t, e)
			rawGet(t, addr, "/r", "") // stored
			clk.advance(5 * time.Second)
			got := rawGet(t, addr, "/r", "")
			for _, want := range []string{"\r\n" + tc.field + "\r\n", "\r\nX-New: 1\r\n", "\r\nDate: " + clk.date(0) + "\r\n",
				"\r\nAge: 0\r\n", "Cache-Status: vkp; fwd=stale; fwd-status=304; " + tc.detail + "\r\n"} {
				if !strings.Contains(got, want) {
					t.Fatalf("the answer lacks %q:\n%s", want, got)
				}
			}
			if !strings.HasSuffix(got, "\r\n\r\ngood") || strings.Contains(got, "X-New: 0") {
				t.Fatalf("not the stored body with the 304's fields:\n%s", got)
			}
			if got := rawGet(t, addr, "/r", ""); !strings.Contains(got, "fwd=uri-miss") {
				t.Fatalf("the entry was kept:\n%s", got)
			}
		})
	}
}
