package expr

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestTemplate(t *testing.T) {
	ctxs := sampleCtxs(t)
	tests := []struct {
		name string
		req  string
		src  string
		want string
	}{
		{"method and path", "base", `{Method}_{Path}`, "GET_/api/123"},
		{"case kept", "base", `Key-{Header('x-flag')}`, "Key-True"},
		{"literal braces", "base", `{{123}}{Path}`, "{123}/api/123"},
		{"braces around field", "base", `{{{Path}}}`, "{/api/123}"},
		{"only literal braces", "base", `{{}}`, "{}"},
		{"plain text", "base", `static`, "static"},
		{"field name case", "base", `{ method }`, "GET"},
		{"multi header joined", "base", `{Header('x-multi')}`, "one,two"},
		{"comma line kept", "base", `{Header('X-List')}`, "a, b"},
		{"absent header empty", "base", `[{Header('x-missing')}]`, "[]"},
		{"absent content type", "base", `[{ContentType}]`, "[]"},
		{"content type", "json", `{ContentType}`, "application/json; charset=utf-8"},
		{"content length", "json", `{ContentLength}`, "2"},
		{"content length absent", "base", `[{ContentLength}]`, "[]"},
		{"booleans", "tls", `{IsHttps}/{HasFormContentType}/{Scheme}`, "true/false/https"},
		{"protocol host", "http10", `{Protocol}@{Host}`, "HTTP/1.0@old.example"},
		{"query string", "base", `{QueryString}`, "?a=1&a=2&B=x"},
		{"query values", "base", `{Query('a')}`, "1,2"},
		{"query keys", "base", `{Query('#Keys')}`, "a,a,B"},
		{"query values all", "base", `{Query('#Values')}`, "1,2,x"},
		{"query kvs", "base", `{Query('#KVS')}`, "a=1,a=2,B=x"},
		{"cookie", "base", `{Cookie('SID')}`, "abc"},
		{"cookie keys", "base", `{Cookie('#Keys')}`, "sid,Theme"},
		{"form", "form", `{Form('tag')}`, "x,y"},
		{"form on json empty", "json", `[{Form('name')}]`, "[]"},
		{"multipart form", "multipart", `{Form('name')}`, "Bob"},
		{"pathbase empty", "base", `[{PathBase}]`, "[]"},
		{"literals", "base", `{'lit'}-{42}-{true}-{null}-{"a}b"}`, "lit-42-true--a}b"},
		{"brace inside key", "base", `[{Header('a}b')}]`, "[]"},
		{"newline in literal", "base", "a\n{Method}", "a\nGET"},
		{"path as sent", "rawpath", `{Path}`, "/a//x/..%2Fy/%2e%2e/z"},
		{"absolute-form path", "absolute", `{Path}|{QueryString}`, "/|?q=1"},
	}
	raw := &fasthttp.RequestCtx{}
	raw.Request.SetRequestURI("/a//x/..%2Fy/%2e%2e/z?q=1")
	ctxs["rawpath"] = raw
	abs := &fasthttp.RequestCtx{}
	abs.Request.SetRequestURI("http://example.com?q=1")
	ctxs["absolute"] = abs
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := CompileTemplate(tt.src)
			if err != nil {
				t.Fatalf("CompileTemplate(%q): %v", tt.src, err)
			}
			if got := string(tmpl.AppendTo(nil, ctxs[tt.req])); got != tt.want {
				t.Errorf("render %q on %s = %q, want %q", tt.src, tt.req, got, tt.want)
			}
		})
	}
}

func TestTemplateAppendsToBuffer(t *testing.T) {
	tmpl, err := CompileTemplate(`{Method}_{Path}`)
	if err != nil {
		t.Fatal(err)
	}
	buf := append(make([]byte, 0, 64), "a#"...)
	buf = tmpl.AppendTo(buf, baseCtx())
	if string(buf) != "a#GET_/api/123" {
		t.Errorf("got %q", buf)
	}
	if tmpl.String() != `{Method}_{Path}` {
		t.Errorf("String() = %q", tmpl.String())
	}
	var nilTmpl *Template
	if got := nilTmpl.AppendTo(buf[:2], baseCtx()); string(got) != "a#" {
		t.Errorf("nil template appended %q", got)
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		line, col int
		token     string
		msg       string
	}{
		{"empty", ``, 1, 1, "", "empty template"},
		{"lone open", `{`, 1, 1, "{", `unclosed "{"`},
		{"lone close", `}`, 1, 1, "}", `unmatched "}"`},
		{"close after field", `{Path}}`, 1, 7, "}", `unmatched "}"`},
		{"literal then lone close", `a{{b}`, 1, 5, "}", `unmatched "}"`},
		{"empty field", `a{}`, 1, 2, "{}", "empty field"},
		{"blank field", `{  }`, 1, 1, "{  }", "empty field"},
		{"unknown field", `{Method}_{Foo}`, 1, 11, "Foo", `unknown field "Foo"`},
		{"unknown field line 2", "x\n{Bad}", 2, 2, "Bad", "unknown field"},
		{"unclosed field", `{Path`, 1, 1, "{", `unclosed "{"`},
		{"expression not allowed", `{Path = 'x'}`, 1, 7, "=", `expected "}" after field`},
		{"nested braces", `{ {} }`, 1, 3, "{", "expected field or value"},
		{"field then garbage", `{ dsd{}dds }`, 1, 3, "dsd", "unknown field"},
		{"keyword", `{and}`, 1, 2, "and", "keyword"},
		{"bad key", `{Header(1)}`, 1, 9, "1", "quoted string"},
		{"unterminated key", `{Header('x)}`, 1, 9, "'x)}", "unterminated string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := CompileTemplate(tt.src)
			if err == nil {
				t.Fatalf("CompileTemplate(%q) = %v, want error", tt.src, tmpl)
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if e.Line != tt.line || e.Col != tt.col || e.Token != tt.token || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("CompileTemplate(%q) error = {%d:%d %q %q}, want {%d:%d %q ...%q...}",
					tt.src, e.Line, e.Col, e.Token, e.Msg, tt.line, tt.col, tt.token, tt.msg)
			}
		})
	}
}
