package engine

import (
	"strings"
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
