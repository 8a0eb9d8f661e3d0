package engine

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// rawGet sends one request on a fresh connection and returns the answer's
// bytes as they came.
func rawGet(t *testing.T, addr, target, extra string) string {
	t.Helper()
	c := dialTest(t, addr)
	if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: x\r\n"+extra+"Connection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A stale entry served after a failed revalidation (stale-if-error, or a
// 304 about another response) is the same on the wire whether the entry
// came from a hot copy already decoded or from one parsed now: as a hit,
// with the stored Date and no invented Content-Type, although the
// upstream's answer (without Date) or the error reset the response header.
func TestReview6StaleAnswerDecodedSameAsParsed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		later originResp
		cs    string
	}{
		{"stale-if-error", originResp{status: 500, body: "bad"}, "detail=stale-if-error"},
		{"not-updated", originResp{status: 304, header: []string{"ETag: \"other\""}}, "detail=not-updated"},
		// The upstream fails: the error answer (a Reset response) is
		// replaced by the stale entry.
		{"failed", originResp{body: "truncated", cut: 2}, "detail=stale-if-error"},
		// A 304 about the stored response, without Date, refreshes it:
		// the refreshed entry, dated when the 304 arrived (review7), is
		// answered as a hit is.
		{"refreshed", originResp{status: 304, header: []string{"ETag: \"v1\""}}, "fwd-status=304; stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newTestClock()
			var mu sync.Mutex
			seen := map[string]int{}
			o := startScriptOrigin(t, func(r originReq) originResp {
				mu.Lock()
				defer mu.Unlock()
				seen[r.target]++
				if seen[r.target] == 1 {
					return originResp{body: "good", header: []string{"Date: " + clk.date(-30*time.Second), "ETag: \"v1\"",
						"Cache-Control: max-age=31, stale-if-error=60", "X-A: 1"}}
				}
				return tc.later
			})
			e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{Now: clk.Now})
			_, addr := serveEngine(t, e)
			stored := "\r\nDate: " + clk.date(-30*time.Second) + "\r\n"
			rawGet(t, addr, "/a", "") // stored
			rawGet(t, addr, "/b", "") // stored
			clk.advance(500 * time.Millisecond)
			// /a: a fresh hit decodes its hot copy (kept until +1.5 s).
			if got := rawGet(t, addr, "/a", ""); !strings.Contains(got, "Cache-Status: vkp; hit") {
				t.Fatalf("not a hit:\n%s", got)
			}
			rawGet(t, addr, "/a", "") // uses the decoded copy
			clk.advance(700 * time.Millisecond)
			// Both stale now; /a's hot copy is still live and decoded, /b
			// is read from the store and parsed.
			a := rawGet(t, addr, "/a", "")
			b := rawGet(t, addr, "/b", "")
			if tc.name == "refreshed" {
				stored = "\r\nDate: " + clk.date(0) + "\r\n"
			}
			if !strings.Contains(a, tc.cs) || !strings.Contains(b, tc.cs) {
				t.Fatalf("not served stale:\n%s\n---\n%s", a, b)
			}
			for _, got := range []string{a, b} {
				if !strings.Contains(got, stored) || strings.Contains(got, "Content-Type") {
					t.Fatalf("a stale answer lost the stored Date %q or got a Content-Type:\n%s", stored, got)
				}
			}
			if a != b {
				t.Fatalf("decoded stale answer differs from the parsed one:\n%s\n---want---\n%s", a, b)
			}
		})
	}
}

// Hits of every kind (GET, HEAD, Range, conditional, Vary variants,
// stale-while-revalidate) on many connections, with invalidations (POST)
// dropping the hot copies meanwhile: the answers stay right, nothing races
// (run under -race), and each shard's byte count is what it holds.
func TestReview6HotDecodedMixedConcurrent(t *testing.T) {
	var n atomic.Int64
	o := startScriptOrigin(t, func(r originReq) originResp {
		n.Add(1)
		switch {
		case r.method == "POST":
			return originResp{status: 204}
		case r.target == "/v":
			return originResp{body: "lang " + r.header.Get("Accept-Language"), header: []string{
				"Cache-Control: max-age=60", "Vary: Accept-Language", "X-V: 1"}}
		case r.target == "/s":
			return originResp{body: "swr body", header: []string{"Cache-Control: max-age=0, stale-while-revalidate=60", "ETag: \"s\""}}
		}
		return originResp{body: "0123456789", header: []string{"Cache-Control: max-age=60", "ETag: \"r\"", "X-R: 1"}}
	})
	e := mustEngine(t, oneRoute(`, "Metadata": {"Cache": "Memory"}`, o.addr), Options{})
	c, _ := serveEngine(t, e)
	c.MaxConns = 64
	errs := make(chan string, 8)
	for g := range 8 {
		go func() {
			for i := range 150 {
				req, resp := &fasthttp.Request{}, &fasthttp.Response{}
				path, want, wantStatus := "/r", "0123456789", 200
				switch (g + i) % 8 {
				case 1:
					req.Header.SetMethod("HEAD")
					want = ""
				case 2:
					req.Header.Set("Range", "bytes=2-4")
					want, wantStatus = "234", 206
				case 3:
					req.Header.Set("If-None-Match", "\"r\"")
					want, wantStatus = "", 304
				case 4:
					lang := []string{"en", "fr", "de"}[i%3]
					req.Header.Set("Accept-Language", lang)
					path, want = "/v", "lang "+lang
				case 5:
					path, want = "/s", "swr body"
				case 6:
					if i%5 == 0 {
						req.Header.SetMethod("POST")
						req.SetBodyString("x")
						want, wantStatus = "", 204
					}
				}
				req.SetRequestURI("http://" + c.Addr + path)
				if err := c.Do(req, resp); err != nil {
					errs <- err.Error()
					return
				}
				if (wantStatus == 206 || wantStatus == 304) && resp.StatusCode() == 200 {
					// forwarded: the origin ignores Range and conditionals
					want, wantStatus = "0123456789", 200
				}
				if string(resp.Body()) != want || resp.StatusCode() != wantStatus {
					errs <- fmt.Sprintf("%s %s %q: %d %q %s", req.Header.Method(), path, req.Header.Peek("Range"), resp.StatusCode(), resp.Body(), resp.Header.String())
					return
				}
				if wantStatus == 200 && req.Header.IsGet() && len(resp.Header.Peek("Cache-Status")) == 0 {
					errs <- "no Cache-Status: " + resp.String()
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
	_, decoded := hotCounted(t, e.reg.stores.sharing("memory"))
	t.Logf("origin requests %d, decoded bytes %d", n.Load(), decoded)
}
