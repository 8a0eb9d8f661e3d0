package expr

import "testing"

const benchStmt = `Header('x-env') = 'test' and Path ~= '^/api/\d+' and Method in ('GET','POST')`

func BenchmarkEval(b *testing.B) {
	ctxs := sampleCtxs(b)
	benches := []struct{ name, req, stmt string }{
		{"header_regex_in", "base", benchStmt},
		{"header_eq", "base", `Header('x-env') = 'test'`},
		{"multi_header_ne", "base", `Header('x-multi') != 'three'`},
		{"special_keys", "base", `Header('#KVS') = 'nope'`},
		{"query_cookie", "base", `Query('a') = '2' and Cookie('sid') = 'abc'`},
		{"content_length", "json", `ContentLength > 1 and ContentLength != null`},
		{"precedence", "base", `Method = 'POST' or Method = 'GET' and not(Path = '/x')`},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			p := mustCompile(b, bb.stmt)
			ctx := ctxs[bb.req]
			b.ReportAllocs()
			for b.Loop() {
				p.Eval(ctx)
			}
		})
	}
}

func BenchmarkTemplate(b *testing.B) {
	ctxs := sampleCtxs(b)
	benches := []struct{ name, req, src string }{
		{"header_path", "base", `{Header('x-env')}:{Path}`},
		{"method_path", "base", `{Method}_{Path}`},
		{"query_kvs", "base", `{Query('#KVS')}`},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			tmpl, err := CompileTemplate(bb.src)
			if err != nil {
				b.Fatal(err)
			}
			ctx := ctxs[bb.req]
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				buf = tmpl.AppendTo(buf[:0], ctx)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(benchStmt); err != nil {
			b.Fatal(err)
		}
	}
}
