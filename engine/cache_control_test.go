package engine

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestParseCacheControl(t *testing.T) {
	for _, tc := range []struct {
		in                     string
		flags                  uint32
		maxAge, sMaxAge, stale int64
	}{
		{"max-age=60", 0, 60, ccUnset, ccUnset},
		{"MAX-AGE=60, Public", ccPublic, 60, ccUnset, ccUnset},
		{`max-age="60"`, 0, 60, ccUnset, ccUnset},
		{"max-age=60, max-age=10", 0, 60, ccUnset, ccUnset},
		{"max-age=abc", 0, 0, ccUnset, ccUnset},
		{"max-age=-1", 0, 0, ccUnset, ccUnset},
		{"max-age=99999999999999999999", 0, deltaMax, ccUnset, ccUnset},
		{"s-maxage=5,no-cache", ccNoCache, ccUnset, 5, ccUnset},
		{`no-cache="set-cookie, x", private="a,b", must-revalidate`, ccNoCache | ccPrivate | ccMustRevalidate, ccUnset, ccUnset, ccUnset},
		{"max-stale", ccMaxStaleAny, ccUnset, ccUnset, ccUnset},
		{"max-stale=30", 0, ccUnset, ccUnset, 30},
		{" , ,no-store ,", ccNoStore, ccUnset, ccUnset, ccUnset},
		{"only-if-cached, proxy-revalidate, immutable, must-understand", ccOnlyIfCached | ccProxyRevalidate | ccImmutable | ccMustUnderstand, ccUnset, ccUnset, ccUnset},
		{"unknown=\"a,b\", max-age=3", 0, 3, ccUnset, ccUnset},
	} {
		cc := parseCacheControl([][]byte{[]byte(tc.in)})
		if cc.flags != tc.flags || cc.maxAge != tc.maxAge || cc.sMaxAge != tc.sMaxAge || cc.maxStale != tc.stale {
			t.Errorf("%q: flags %b max-age %d s-maxage %d max-stale %d; want %b %d %d %d", tc.in,
				cc.flags, cc.maxAge, cc.sMaxAge, cc.maxStale, tc.flags, tc.maxAge, tc.sMaxAge, tc.stale)
		}
	}
	// Several lines are one list.
	cc := parseCacheControl([][]byte{[]byte("public"), []byte("max-age=7")})
	if !cc.has(ccPublic) || cc.maxAge != 7 {
		t.Errorf("two lines: %+v", cc)
	}
}

func TestParseHTTPDate(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 NOV 1994 08:49:37 gmt"} {
		got, ok := parseHTTPDate([]byte(s))
		if !ok || !got.Equal(want) {
			t.Errorf("%q: %v %v", s, got, ok)
		}
	}
	for _, s := range []string{"0", "", "-1", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT", "tomorrow"} {
		if _, ok := parseHTTPDate([]byte(s)); ok {
			t.Errorf("%q parsed", s)
		}
	}
	if got := string(appendHTTPDate(nil, want)); got != "Sun, 06 Nov 1994 08:49:37 GMT" {
		t.Errorf("appendHTTPDate: %q", got)
	}
}

func TestEtagMatch(t *testing.T) {
	for _, tc := range []struct {
		inm, etag string
		want      bool
	}{
		{`"a"`, `"a"`, true},
		{`W/"a"`, `"a"`, true},
		{`"a"`, `W/"a"`, true},
		{`"b", "a"`, `"a"`, true},
		{`"x,y", "a"`, `"a"`, true},
		{`"x,y"`, `"y"`, false},
		{`*`, `"a"`, true},
		{`*`, ``, true},
		{`"a"`, ``, false},
		{`"ab"`, `"a"`, false},
	} {
		if got := etagMatch([][]byte{[]byte(tc.inm)}, []byte(tc.etag)); got != tc.want {
			t.Errorf("If-None-Match %s vs ETag %s: %v", tc.inm, tc.etag, got)
		}
	}
}

func TestVaryNames(t *testing.T) {
	names, star := varyNames([][]byte{[]byte("Accept-Encoding, origin"), []byte("ACCEPT-ENCODING")})
	if star || string(names) != "accept-encoding,origin" {
		t.Errorf("names %q star %v", names, star)
	}
	if _, star := varyNames([][]byte{[]byte("origin, *")}); !star {
		t.Error("* not seen")
	}
	// Values: lines joined, items trimmed; absent and empty differ.
	var h fasthttp.RequestHeader
	h.Add("Accept-Encoding", "gzip ,  br")
	h.Add("Accept-Encoding", "zstd")
	got := appendVaryValues(nil, []byte("accept-encoding,origin"), &h, nil)
	if string(got) != "accept-encoding\x02gzip,br,zstd\x00origin\x01\x00" {
		t.Errorf("values %q", got)
	}
	h.Set("Origin", "")
	if got := appendVaryValues(nil, []byte("origin"), &h, nil); string(got) != "origin\x02\x00" {
		t.Errorf("empty Origin: %q", got)
	}
}

func TestEntryRoundTrip(t *testing.T) {
	var h fasthttp.ResponseHeader
	h.SetStatusCode(203)
	h.Set("Content-Type", "text/plain")
	h.Add("Link", "</a>; rel=preload")
	h.Add("Link", "</b>; rel=preload")
	h.Set("Age", "5")
	h.SetContentLength(4)
	hdrs := appendFields(nil, &h)
	m := entryMeta{flags: entValidators | entMustRevalidate, stored: 1234567890123, age: 3 * time.Second,
		lifetime: time.Minute, swr: 5 * time.Second, sie: 7 * time.Second}
	raw := append(appendEntry(nil, &m, 203, hdrs, []byte("\x02gzip\x00")), "body"...)
	e, err := decodeEntry(raw)
	if err != nil {
		t.Fatal(err)
	}
	if e.flags != m.flags || e.stored != m.stored || e.age != m.age || e.lifetime != m.lifetime || e.swr != m.swr || e.sie != m.sie ||
		e.status != 203 || string(e.body) != "body" || string(e.vary) != "\x02gzip\x00" {
		t.Fatalf("decoded %+v", e)
	}
	var resp fasthttp.Response
	if err := e.writeTo(&resp, nil); err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.PeekAll("Link"); len(got) != 2 || string(got[1]) != "</b>; rel=preload" {
		t.Errorf("Link lines %q", got)
	}
	if resp.Header.Peek("Age") != nil || string(resp.Header.ContentType()) != "text/plain" || string(resp.Body()) != "body" {
		t.Errorf("served %s", resp.String())
	}
	for i := 0; i < len(raw)-4; i++ {
		if _, err := decodeEntry(raw[:i]); err == nil {
			t.Fatalf("a cut entry (%d of %d bytes) decoded", i, len(raw))
		}
	}
}

func TestValidTargeted(t *testing.T) {
	for in, want := range map[string]bool{
		"max-age=60":                      true,
		"max-age=60, no-store":            true,
		"private, s-maxage=5;x=1":         true,
		`max-age=60, foo="bar", baz=?1`:   true,
		"max-age=10000, &&&&&":            false,
		`max-age="10000"`:                 false,
		"max-age=1.5":                     false,
		"Max-Age=60":                      false,
		"max-age=60,":                     false,
		"max-age=60 no-store":             false,
		"stale-while-revalidate=tomorrow": false, // a valid item (a token), but not an integer
	} {
		if got := validTargeted([][]byte{[]byte(in)}); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

// A template's output never holds the NUL that starts a variant's part of
// a key, and the escaping is one-to-one.
func TestEscapeKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"r#GET_/faq", "r#GET_/faq"},
		{"r#GET_/faq\x00\x02text/html\x00", "r#GET_/faq%00%02text/html%00"},
		{"r#a%00", "r#a%2500"},
		{"r#tab\there\x7f", "r#tab%09here%7F"},
	}
	for _, tt := range tests {
		if got := string(escapeKey([]byte(tt.in), 2)); got != tt.want {
			t.Errorf("escapeKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
