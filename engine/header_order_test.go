package engine

import (
	"bufio"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// The header rewrite is checked against a model written independently of
// forward.go, on random messages that repeat names (Set-Cookie, Cookie,
// Via, Accept, Link, X-Forwarded-*), carry empty lines, several Connection
// lines (close among them) and hop-by-hop headers in any case: no line that
// stays is lost or duplicated, a field's lines keep their order, and no
// hop-by-hop header survives.

type hdrLine struct{ k, v string }

func modelIsHop(k string, req bool) bool {
	lk := strings.ToLower(k)
	if strings.HasPrefix(lk, "proxy-") {
		return true
	}
	names := []string{"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
	if req {
		names = append(names, "expect")
	}
	for _, n := range names {
		if lk == n {
			return true
		}
	}
	return false
}

// modelStrip is what should stay, by lower-case name, in order.
func modelStrip(lines []hdrLine, req bool) map[string][]string {
	named := map[string]bool{}
	for _, l := range lines {
		if strings.EqualFold(l.k, "Connection") {
			for _, tok := range strings.Split(l.v, ",") {
				switch tok = strings.ToLower(strings.TrimSpace(tok)); tok {
				case "", "close", "keep-alive", "content-length", "transfer-encoding", "host":
				default:
					named[tok] = true
				}
			}
		}
	}
	out := map[string][]string{}
	var cookies []string
	for _, l := range lines {
		lk := strings.ToLower(l.k)
		switch {
		case modelIsHop(lk, req) || named[lk]:
		case req && lk == "cookie": // fasthttp joins a request's cookies into one line
			cookies = append(cookies, l.v)
		case lk == "content-type" || lk == "host": // fasthttp keeps the last line (Host: one allowed)
			out[lk] = []string{l.v}
		default:
			out[lk] = append(out[lk], l.v)
		}
	}
	if len(cookies) > 0 {
		out["cookie"] = []string{strings.Join(cookies, "; ")}
	}
	return out
}

func randomLines(r *rand.Rand, req bool) []hdrLine {
	// Each list holds the names fasthttp keeps apart in the other kind of
	// message (Cookie, User-Agent in responses; Content-Encoding, Server,
	// Set-Cookie in requests): there they are ordinary, repeatable fields.
	names := []string{"Set-Cookie", "Via", "Link", "Accept", "X-A", "X-B", "WWW-Authenticate", "Vary", "Expect", "Content-Type", "x-a", "X-a", "Cache-Control",
		"Cookie", "User-Agent"}
	if req {
		names = []string{"Accept", "Via", "Link", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Cookie", "X-A", "X-B", "Accept-Language",
			"Content-Type", "x-a", "X-a", "Host", "cookie", "Content-Encoding", "Server", "Set-Cookie"}
	}
	tokens := []string{"keep-alive", "close", "X-A", "Via", "Accept", "Link", "Cookie", "Set-Cookie", "X-Forwarded-For", "Server",
		"x-forwarded-for", "X-Forwarded-Proto", "X-Forwarded-Host", "Content-Type", "Trailer", "Transfer-Encoding", "Host", "Expect",
		"Proxy-Foo", "Accept-Language", "Vary", "x-a", "Content-Length", "Keep-Alive", "TE", "Upgrade", "Cache-Control", "Connection"}
	hops := []string{"Keep-Alive", "TE", "Upgrade", "Proxy-Authorization", "Proxy-Foo", "Trailer", "proxy-connection"}
	if req {
		hops = append(hops, "Expect")
	}
	var ls []hdrLine
	n := 2 + r.Intn(10)
	if r.Intn(5) == 0 {
		n = 28 + r.Intn(14) // around and over scanHop's 32 names
	}
	hosts := 0
	for i := 0; i < n; i++ {
		k, v := names[r.Intn(len(names))], fmt.Sprintf("v%d", i)
		switch {
		case k == "Host":
			if hosts > 0 || !req {
				k = "X-B"
			} else {
				hosts++
				v = "client.example" // the start line's Host is replaced below
			}
		case strings.EqualFold(k, "Cookie") || k == "Set-Cookie":
			v = fmt.Sprintf("c%d=v%d", i, i)
		case k == "X-Forwarded-For":
			v = fmt.Sprintf("10.0.0.%d", i)
			if r.Intn(3) == 0 {
				v += fmt.Sprintf(", 10.1.0.%d", i)
			}
		case k == "X-Forwarded-Proto":
			v = "https"
		case r.Intn(6) == 0:
			v = ""
		case r.Intn(4) == 0:
			v = fmt.Sprintf("a%d, b%d,c%d", i, i, i) // commas in values
		}
		ls = append(ls, hdrLine{k, v})
	}
	if r.Intn(5) == 0 { // many distinct names, one repeated: the repeat may lie past scanHop's 32
		ls = ls[:r.Intn(2)]
		for i := 0; i < 30+r.Intn(8); i++ {
			ls = append(ls, hdrLine{fmt.Sprintf("X-D%d", i), fmt.Sprintf("d%d", i)})
		}
		ls = append(ls, hdrLine{"X-D3", "again"})
	}
	if r.Intn(6) == 0 {
		ls = append(ls, hdrLine{"Transfer-Encoding", "chunked"})
	}
	if r.Intn(6) == 0 {
		ls = append(ls, hdrLine{"Trailer", "X-Checksum"})
	}
	for i, n := 0, r.Intn(4); i < n; i++ {
		switch r.Intn(3) {
		case 0:
			var ts []string
			for j, c := 0, 1+r.Intn(3); j < c; j++ {
				ts = append(ts, tokens[r.Intn(len(tokens))])
			}
			ls = append(ls, hdrLine{"Connection", strings.Join(ts, ", ")})
		case 1:
			ls = append(ls, hdrLine{"Connection", []string{"keep-alive", "close", "Keep-Alive", "Close"}[r.Intn(4)]})
		default:
			ls = append(ls, hdrLine{hops[r.Intn(len(hops))], fmt.Sprintf("h%d", i)})
		}
	}
	r.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
	return ls
}

func randomCase(r *rand.Rand, s string) string {
	switch r.Intn(3) {
	case 0:
		return strings.ToLower(s)
	case 1:
		return strings.ToUpper(s)
	}
	return s
}

func headerLines(raw string) map[string][]string {
	out := map[string][]string{}
	for i, l := range strings.Split(raw, "\r\n") {
		if i == 0 || l == "" {
			continue
		}
		k, v, _ := strings.Cut(l, ":")
		k = strings.ToLower(k)
		out[k] = append(out[k], strings.TrimSpace(v))
	}
	return out
}

func diffLines(got, want map[string][]string, ignore ...string) string {
	var d []string
	for k, w := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(w) {
			d = append(d, fmt.Sprintf("%s: got %q, want %q", k, got[k], w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && !strings.Contains(strings.Join(ignore, ","), k) {
			d = append(d, fmt.Sprintf("%s: unexpected %q", k, g))
		}
	}
	return strings.Join(d, "; ")
}

// modelRounds runs check on rounds random messages: the start line and
// header lines of each, and the lines' model.
const modelN = 3000

func modelRounds(t *testing.T, seed int64, req bool, first string, check func(raw string, ls []hdrLine) (got string, want map[string][]string)) {
	r := rand.New(rand.NewSource(seed))
	for i := 0; i < modelN; i++ {
		ls := randomLines(r, req)
		if req && !slices.ContainsFunc(ls, func(l hdrLine) bool { return l.k == "Host" }) {
			ls = append([]hdrLine{{"Host", "client.example"}}, ls...)
		}
		raw := first
		for _, l := range ls {
			raw += randomCase(r, l.k) + ": " + l.v + "\r\n"
		}
		got, want := check(raw+"\r\n", ls)
		if d := diffLines(headerLines(got), want, "content-length", "date"); d != "" {
			t.Fatalf("input:\n%s\nforwarded:\n%s\n%s", raw, got, d)
		}
	}
}

func TestHeaderRewriteAgainstModel(t *testing.T) {
	for seed := int64(1); seed <= 5; seed += 2 {
		testHeaderRewriteAgainstModel(t, seed)
	}
}

func testHeaderRewriteAgainstModel(t *testing.T, seed int64) {
	t.Run("request", func(t *testing.T) {
		modelRounds(t, seed, true, "GET / HTTP/1.1\r\n", func(raw string, ls []hdrLine) (string, map[string][]string) {
			var req fasthttp.Request
			if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatalf("%v\n%s", err, raw)
			}
			rewriteForUpstream(&req.Header, []byte("9.9.9.9"), false, nil)
			want := modelStrip(ls, true)
			var xff []string
			for _, v := range want["x-forwarded-for"] {
				if v != "" {
					xff = append(xff, v)
				}
			}
			want["x-forwarded-for"] = []string{strings.Join(append(xff, "9.9.9.9"), ", ")}
			want["x-forwarded-proto"] = []string{"http"}
			want["x-forwarded-host"] = []string{"client.example"}
			want["host"] = []string{"client.example"}
			return req.Header.String(), want
		})
	})
	t.Run("response", func(t *testing.T) {
		modelRounds(t, seed+1, false, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", func(raw string, ls []hdrLine) (string, map[string][]string) {
			var resp fasthttp.Response
			if err := resp.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatalf("%v\n%s", err, raw)
			}
			stripHopResponse(&resp.Header)
			return resp.Header.String(), modelStrip(ls, false)
		})
	})
}

// Cases the model found, kept by name.
func TestHeaderRewriteCases(t *testing.T) {
	readReq := func(raw string) *fasthttp.Request {
		var req fasthttp.Request
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		return &req
	}
	readResp := func(raw string) *fasthttp.ResponseHeader {
		var h fasthttp.ResponseHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		return &h
	}
	all := func(peek [][]byte) string {
		var s []string
		for _, v := range peek {
			s = append(s, string(v))
		}
		return strings.Join(s, "|")
	}

	// A Connection: close line hides the others from PeekAll.
	req := readReq("GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Secret\r\nX-Secret: s\r\nConnection: close\r\n\r\n")
	rewriteForUpstream(&req.Header, []byte("9.9.9.9"), false, nil)
	if v := req.Header.Peek("X-Secret"); v != nil {
		t.Errorf("request: X-Secret, named by a Connection line before 'close', forwarded: %q", v)
	}
	resp := readResp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: X-Secret\r\nX-Secret: s\r\nConnection: close\r\n\r\n")
	stripHopResponse(resp)
	if v := resp.Peek("X-Secret"); v != nil {
		t.Errorf("response: X-Secret forwarded: %q", v)
	}

	// An empty first line (stored as nil) still counts as present.
	req = readReq("GET / HTTP/1.1\r\nHost: x\r\nVia: \r\nConnection: keep-alive\r\nX-A: 1\r\nAccept: \r\nX-A: 2\r\nAccept: a\r\nX-B: b\r\n\r\n")
	stripHopRequest(&req.Header)
	if got := all(req.Header.PeekAll("Accept")); got != "|a" {
		t.Errorf("Accept lines %q, want \"|a\"", got)
	}

	// Expect stays in responses, and Cookie is an ordinary field there
	// (fasthttp keeps it apart in requests only): both keep their order.
	for field, raw := range map[string]string{
		"Expect": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: x\r\nExpect: 1\r\nExpect: 2\r\n\r\n",
		"Cookie": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nCookie: 1\r\nX-A: 1\r\nCookie: 2\r\n\r\n",
	} {
		resp = readResp(raw)
		stripHopResponse(resp)
		if got := all(resp.PeekAll(field)); got != "1|2" {
			t.Errorf("response %s lines %q, want 1|2", field, got)
		}
	}

	// A name fasthttp cannot normalize (a space in it) is kept as sent, in
	// any case; Connection still removes it.
	resp = readResp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x y\r\nX Y: 1\r\nx y: 2\r\nX-Kept: 1\r\n\r\n")
	stripHopResponse(resp)
	for k := range resp.All() {
		if strings.EqualFold(string(k), "x y") {
			t.Errorf("response: %q, named by Connection, forwarded", k)
		}
	}
	// A response's Content-Type reads as the default once deleted: a
	// Connection line naming it must not loop.
	resp = readResp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Content-Type\r\nContent-Type: text/html\r\n\r\n")
	stripHopResponse(resp)
	if v := resp.Peek("Content-Type"); len(v) != 0 {
		t.Errorf("response Content-Type %q, named by Connection, forwarded", v)
	}

	// Likewise a request's Content-Encoding (the decoding order).
	req = readReq("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Encoding: gzip\r\nX-A: 1\r\nContent-Encoding: br\r\n\r\n")
	rewriteForUpstream(&req.Header, []byte("9.9.9.9"), false, nil)
	if got := all(req.Header.PeekAll("Content-Encoding")); got != "gzip|br" {
		t.Errorf("request Content-Encoding lines %q, want gzip|br", got)
	}

	// However many spellings of an unnormalizable name, Connection removes
	// them all.
	raw := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: a b c d\r\n"
	for _, v := range []string{"a b c d", "A b c d", "a B c d", "a b C d", "a b c D", "A B c d", "A b C d", "A b c D", "a B C d", "A B C D"} {
		raw += v + ": v\r\n"
	}
	resp = readResp(raw + "\r\n")
	stripHopResponse(resp)
	for k := range resp.All() {
		if strings.EqualFold(string(k), "a b c d") {
			t.Errorf("response: %q, named by Connection, forwarded", k)
		}
	}

	// Without a Host there is no X-Forwarded-Host to set, and the client's
	// must not pass as vkp's.
	for _, raw := range []string{
		"GET / HTTP/1.0\r\nX-Forwarded-Host: evil\r\n\r\n",
		"GET / HTTP/1.0\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Host: evil2\r\nAccept: a\r\nAccept: b\r\n\r\n",
	} {
		req = readReq(raw)
		rewriteForUpstream(&req.Header, []byte("9.9.9.9"), false, nil)
		if v := req.Header.PeekAll("X-Forwarded-Host"); len(v) != 0 {
			t.Errorf("%q: X-Forwarded-Host %q forwarded", raw, v)
		}
		if strings.Contains(raw, "Accept") && all(req.Header.PeekAll("Accept")) != "a|b" {
			t.Errorf("%q: Accept lines %q, want a|b", raw, all(req.Header.PeekAll("Accept")))
		}
	}

	// Every X-Forwarded-* line the client sent is replaced.
	req = readReq("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Host: evil\r\n\r\n")
	rewriteForUpstream(&req.Header, []byte("9.9.9.9"), false, nil)
	if p, h := all(req.Header.PeekAll("X-Forwarded-Proto")), all(req.Header.PeekAll("X-Forwarded-Host")); p != "http" || h != "x" {
		t.Errorf("X-Forwarded-Proto %q, X-Forwarded-Host %q; want http, x", p, h)
	}
}
