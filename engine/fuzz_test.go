package engine

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The parsers of what users and peers send: none may panic, and each keeps
// its contract on any input. `make fuzz` runs them; `make test` runs the
// seeds.

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c"}}, "Clusters": {"c": {"Destinations": [{"Address": "http://127.0.0.1:1"}]}}}}`,
		"{ // c\n \"ReverseProxy\": { /* b */ \"Routes\": {}, },\n}",
		`{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Statement": "Header('x') = 'y'"}, "Metadata": {"MirrorCluster": "c"}}}, "Clusters": {"c": {"LoadBalancingPolicy": "Hash", "Destinations": [{"Address": "a:1"}]}}}}`,
		`[1,2`, `{"a":`, `"x"`, `{"ReverseProxy": {"Routes": {"r": {"Order": "x"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := ParseConfig(src)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("config %v with error %v", cfg, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"00:00:30", "1.02:03:04.5", "30s", "-00:00:01", "10", "", "1:2:3", "99:99:99", "00:00:00.12345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil && d != 0 {
			t.Fatalf("parseDuration(%q) = %v with error %v", s, d, err)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1048576", "64MiB", "1 GiB", "0", "-1", "1e9", "9999999999999KiB", "KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:80/base/", "https://[::1]:8443", "a:1", "http://unix:/run/a.sock", "ftp://x", "http://:80", "http://a:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDestination(s)
		if err != nil {
			return
		}
		if d.addr == "" || strings.HasSuffix(d.base, "/") {
			t.Fatalf("parseDestination(%q) = %+v", s, d)
		}
	})
}

// FuzzChunkedBody decodes an upstream's chunked body: no panic, no more
// bytes than the input holds, and well-formed input decodes to its data.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n", "0005\nhello\n0\n\n", "ffffffffffffffff\r\n", "2\r\r\nab"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &chunkReader{br: bufio.NewReaderSize(bytes.NewReader(in), 16)}
		out, _ := io.ReadAll(io.LimitReader(r, int64(len(in))+1))
		if len(out) > len(in) {
			t.Fatalf("decoded %d bytes from %d", len(out), len(in))
		}
	})
}

// Entries come back from disk and Redis, where anything may have been
// written: decoding never panics, and what it accepts can be served.
func FuzzDecodeEntry(f *testing.F) {
	var h fasthttp.ResponseHeader
	h.SetStatusCode(200)
	h.Set("Cache-Control", "max-age=60")
	h.Set("ETag", `"v"`)
	hdrs := appendFields(nil, &h)
	m := entryMeta{flags: entValidators, stored: 1e18, lifetime: time.Minute}
	f.Add(append(appendEntry(nil, &m, 200, hdrs, []byte("\x02gzip\x00")), "body"...))
	f.Add(appendIndexEntry(nil, []byte("accept-encoding,origin")))
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil || e.kind != entryResponse {
			return
		}
		var resp fasthttp.Response
		e.field("ETag")
		if e.writeTo(&resp, nil) == nil && resp.StatusCode() != e.status {
			t.Fatalf("status %d, entry says %d", resp.StatusCode(), e.status)
		}
	})
}
