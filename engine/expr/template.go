package expr

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// Template is a compiled CacheKey template. It is immutable and safe for
// concurrent use; AppendTo allocates nothing beyond growing dst.
type Template struct {
	src   string
	parts []part
}

// part is either literal text or a field rendered at request time.
type part struct {
	lit    []byte
	render func(dst []byte, ctx *fasthttp.RequestCtx) []byte
}

// CompileTemplate parses a CacheKey template such as "{Method}_{Path}".
// "{{" and "}}" are literal braces; each {...} holds one field or value.
// Output is not upper-cased (VKProxy's legacy engine upper-cased it).
func CompileTemplate(src string) (tmpl *Template, err error) {
	defer catch(&err)
	if src == "" {
		panic(bailout{newError(src, 0, "", "empty template")})
	}
	if err := newerSyntax(src, true); err != nil {
		return nil, err
	}
	t := &Template{src: src}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			t.parts = append(t.parts, part{lit: lit})
			lit = nil
		}
	}
	for i := 0; i < len(src); {
		switch src[i] {
		case '{':
			if i+1 < len(src) && src[i+1] == '{' {
				lit = append(lit, '{')
				i += 2
				continue
			}
			flush()
			var r func([]byte, *fasthttp.RequestCtx) []byte
			r, i = compileField(src, i)
			t.parts = append(t.parts, part{render: r})
		case '}':
			if i+1 < len(src) && src[i+1] == '}' {
				lit = append(lit, '}')
				i += 2
				continue
			}
			panic(bailout{newError(src, i, "}", `unmatched "}" (write "}}" for a literal brace)`)})
		default:
			lit = append(lit, src[i])
			i++
		}
	}
	flush()
	return t, nil
}

// compileField compiles the {...} that opens at src[open] and returns the
// renderer and the offset just past the closing brace. The statement lexer
// reads the inside, so a quoted key may itself contain braces.
func compileField(src string, open int) (func([]byte, *fasthttp.RequestCtx) []byte, int) {
	p := newParser(src, open+1)
	switch p.tok.kind {
	case tokRBrace:
		p.fail(token{pos: open, text: src[open : p.tok.pos+1]}, "empty field %q", src[open:p.tok.pos+1])
	case tokEOF:
		p.fail(token{pos: open, text: "{"}, `unclosed "{"`)
	}
	o := p.parseOperand()
	switch p.tok.kind {
	case tokRBrace:
	case tokEOF:
		p.fail(token{pos: open, text: "{"}, `unclosed "{"`)
	default:
		p.fail(p.tok, `expected "}" after field, found %s`, p.tok.describe())
	}
	end := p.tok.pos + 1
	if !o.isField {
		text := []byte(o.lit.str)
		switch o.lit.kind {
		case litBool:
			text = []byte(boolText(o.lit.b))
		case litNull:
			text = nil
		}
		return func(dst []byte, _ *fasthttp.RequestCtx) []byte { return append(dst, text...) }, end
	}
	def := o.field.def
	if def == fieldDefs["path"] {
		// A key must name what the origin is asked for: the router's
		// normalised path would let "//home" or "/x%2F..%2Fhome" be
		// stored under the key of "/home".
		return appendForwardedPath, end
	}
	switch def.kind {
	case kindNumber:
		get := def.number
		return func(dst []byte, ctx *fasthttp.RequestCtx) []byte {
			if v, ok := get(ctx); ok {
				dst = strconv.AppendInt(dst, v, 10)
			}
			return dst
		}, end
	case kindBool:
		get := def.boolean
		return func(dst []byte, ctx *fasthttp.RequestCtx) []byte {
			return strconv.AppendBool(dst, get(ctx))
		}, end
	}
	s := o.field.source()
	return s.appendTo, end
}

// AppendTo renders the template for ctx onto dst and returns the extended
// slice. Absent fields render as nothing; multi-valued fields join their
// values with ",". A nil *Template renders nothing.
func (t *Template) AppendTo(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	if t == nil {
		return dst
	}
	for i := range t.parts {
		p := &t.parts[i]
		if p.render != nil {
			dst = p.render(dst, ctx)
		} else {
			dst = append(dst, p.lit...)
		}
	}
	return dst
}

// String returns the source of the template.
func (t *Template) String() string { return t.src }
