//go:build !race

// The race detector makes sync.Pool (used by regexp) drop items at random,
// so allocation counts are only meaningful without it.

package expr

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func TestEvalDoesNotAllocate(t *testing.T) {
	ctxs := sampleCtxs(t)
	tests := []struct {
		name string
		req  string
		stmt string
		want bool
	}{
		{"header regex in", "base", `Header('x-env') = 'test' and Path ~= '^/api/\d+' and Method in ('GET','POST')`, true},
		{"multi header ne", "base", `Header('x-multi') != 'three' and Header('x-missing') = null`, true},
		{"special keys", "base", `Header('#Keys') = 'x-num' and Header('#KVS') ~= '^tw' and Header('#Values') > 41`, true},
		{"query and cookie", "base", `Query('A') in ('2', 7) and Cookie('theme') = 'DARK' and Cookie('#Keys') != 'x'`, true},
		{"numbers", "json", `ContentLength <= 2 and not(ContentLength = null) and 3 > ContentLength`, true},
		{"text fields", "base", `Scheme = 'http' and Protocol ~= '1\.1$' and Host != 'x' and QueryString ~= 'B=' and ContentType = null and PathBase = ''`, true},
		{"booleans", "tls", `IsHttps and not HasFormContentType and IsHttps in (true)`, true},
		{"urlencoded form", "form", `Form('tag') = 'y' and Form('#Keys') ~= 'name'`, true},
		{"form gate", "json", `Form('x') = 'y'`, false},
		{"multipart after first parse", "multipart", `Form('NAME') = 'bob' and Form('#Values') = 'x'`, true},
		{"non numeric value", "base", `Header('x-env') < 5 or Header('x-env') != 5.5`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.stmt)
			ctx := ctxs[tt.req]
			if got := p.Eval(ctx); got != tt.want {
				t.Fatalf("Eval = %v, want %v", got, tt.want)
			}
			if n := testing.AllocsPerRun(200, func() { p.Eval(ctx) }); n != 0 {
				t.Errorf("Eval(%q) allocates %v times per run, want 0", tt.stmt, n)
			}
		})
	}
}

func TestTemplateRenderDoesNotAllocate(t *testing.T) {
	ctxs := sampleCtxs(t)
	tests := []struct {
		name, req, src string
	}{
		{"header and path", "base", `{Header('x-env')}:{Path}`},
		{"method path", "base", `{Method}_{Path}{{x}}`},
		{"multi and special", "base", `{Header('x-multi')}|{Query('#KVS')}|{Cookie('sid')}|{QueryString}`},
		{"numbers and bools", "json", `{ContentLength}/{IsHttps}/{HasFormContentType}/{Scheme}`},
		{"form", "form", `{Form('tag')}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := CompileTemplate(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxs[tt.req]
			buf := make([]byte, 0, 256)
			if n := testing.AllocsPerRun(200, func() { buf = tmpl.AppendTo(buf[:0], ctx) }); n != 0 {
				t.Errorf("AppendTo(%q) allocates %v times per run, want 0", tt.src, n)
			}
		})
	}
}

// A compiled predicate is shared by every connection; a fresh RequestCtx per
// request (as fasthttp's server pools them) must not make it allocate once
// the ctx's own buffers are warm.
func TestEvalReusedCtxDoesNotAllocate(t *testing.T) {
	p := mustCompile(t, `Header('x-env') = 'test' and Path ~= '^/api/\d+' and Method in ('GET','POST')`)
	var ctx fasthttp.RequestCtx
	fill := func() {
		ctx.Request.Reset()
		ctx.Request.Header.SetMethod(fasthttp.MethodPost)
		ctx.Request.SetRequestURI("/api/42?q=1")
		ctx.Request.Header.Set("X-Env", "test")
	}
	fill()
	p.Eval(&ctx)
	if n := testing.AllocsPerRun(200, func() {
		fill()
		if !p.Eval(&ctx) {
			t.Fatal("no match")
		}
	}); n != 0 {
		t.Errorf("reset+eval allocates %v times per run, want 0", n)
	}
}
