package expr

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkError asserts err is an *Error whose position points at its token.
func checkError(t *testing.T, src string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v, want *Error", err, err)
	}
	if e.Line < 1 || e.Col < 1 || e.Msg == "" {
		t.Fatalf("bad error %+v for %q", e, src)
	}
	off, ok := offsetOf(src, e.Line, e.Col)
	if !ok {
		t.Fatalf("error %v for %q points outside the input", e, src)
	}
	if !strings.HasPrefix(src[off:], e.Token) {
		t.Fatalf("error %v for %q: token %q is not at %d:%d", e, src, e.Token, e.Line, e.Col)
	}
}

// offsetOf converts a 1-based line and rune column back to a byte offset.
func offsetOf(src string, line, col int) (int, bool) {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(src[off:], '\n')
		if i < 0 {
			return 0, false
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(src) {
			return 0, false
		}
		_, size := utf8.DecodeRuneInString(src[off:])
		off += size
	}
	return off, true
}

var fuzzSeeds = []string{
	`Header('x-env') = 'test' and Path ~= '^/api/\d+' and Method in ('GET','POST')`,
	`not(ContentLength > 3) or Cookie('a') != null`,
	`3 > ContentLength`,
	`IsHttps and HasFormContentType = false`,
	`Form('#KVS') in ('a', 1, true, null)`,
	`Query('#Keys') ~= '(?i)x' OR Header("#Values") >= -5.6`,
	`((Path = '/a\'b'))`,
	`Path == '/'`,
	`ContentLength = 2.3.4`,
	`Header('a`,
}

func FuzzCompile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	ctxs := sampleCtxs(f)
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile(src)
		if err != nil {
			if p != nil {
				t.Fatalf("Compile(%q) returned a predicate and an error", src)
			}
			checkError(t, src, err)
			return
		}
		if p.String() != src {
			t.Fatalf("String() = %q, want %q", p.String(), src)
		}
		for _, ctx := range ctxs {
			first := p.Eval(ctx)
			if p.Eval(ctx) != first {
				t.Fatalf("Compile(%q): Eval is not stable", src)
			}
		}
	})
}

func FuzzCompileTemplate(f *testing.F) {
	for _, s := range []string{
		`{Method}_{Path}`,
		`{{123}}{Path}`,
		`{Header('User-Agent')}|{Query('#KVS')}|{ContentLength}|{IsHttps}`,
		`{Form('a}')}{'x'}{null}{1.5}`,
		`{ {} }`,
		`a}b`,
		`{Path`,
	} {
		f.Add(s)
	}
	ctxs := sampleCtxs(f)
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := CompileTemplate(src)
		if err != nil {
			if tmpl != nil {
				t.Fatalf("CompileTemplate(%q) returned a template and an error", src)
			}
			checkError(t, src, err)
			return
		}
		buf := []byte("prefix#")
		for _, ctx := range ctxs {
			out := tmpl.AppendTo(buf[:7], ctx)
			if string(out[:7]) != "prefix#" {
				t.Fatalf("AppendTo clobbered the prefix: %q", out)
			}
		}
	})
}
