package expr

import (
	"bytes"
	"strconv"
	"strings"
	"unsafe"

	"github.com/valyala/fasthttp"
)

type fieldKind uint8

const (
	kindText fieldKind = iota
	kindNumber
	kindBool
)

// collection is where a keyed field looks its key up.
type collection uint8

const (
	collHeader collection = iota + 1
	collQuery
	collCookie
	collForm
)

// keyMode selects what a keyed field reads: one key's values, or (for the
// special keys) every name, every value, or every name and value.
type keyMode uint8

const (
	modeKey keyMode = iota
	modeKeys
	modeValues
	modeKVS
)

type fieldDef struct {
	name string // canonical spelling, for messages
	kind fieldKind
	coll collection // non-zero for keyed fields: Header('k') and friends

	// Exactly one of these is set for an unkeyed field, matching kind.
	text    func(ctx *fasthttp.RequestCtx) (v []byte, ok bool)
	number  func(ctx *fasthttp.RequestCtx) (n int64, ok bool)
	boolean func(ctx *fasthttp.RequestCtx) bool
}

var fieldDefs = map[string]*fieldDef{}

func init() {
	for _, d := range []*fieldDef{
		{name: "Path", text: getPath},
		{name: "PathBase", text: getPathBase},
		{name: "Method", text: getMethod},
		{name: "Scheme", text: getScheme},
		{name: "Protocol", text: getProtocol},
		{name: "ContentType", text: getContentType},
		{name: "Host", text: getHost},
		{name: "QueryString", text: getQueryString},
		{name: "ContentLength", kind: kindNumber, number: getContentLength},
		{name: "IsHttps", kind: kindBool, boolean: getIsHTTPS},
		{name: "HasFormContentType", kind: kindBool, boolean: hasFormContentType},
		{name: "Header", coll: collHeader},
		{name: "Query", coll: collQuery},
		{name: "Cookie", coll: collCookie},
		{name: "Form", coll: collForm},
	} {
		fieldDefs[strings.ToLower(d.name)] = d
	}
}

func lookupField(name string) *fieldDef { return fieldDefs[strings.ToLower(name)] }

func (d *fieldDef) keyed() bool { return d.coll != 0 }

// numeric reports whether ordering operators make sense on the field: the
// request's own text fields (Path, Method, ...) are never numbers, but a
// header, query, cookie or form value may be.
func (d *fieldDef) numeric() bool { return d.kind == kindNumber || d.keyed() }

// fieldRef is a field as written in the source.
type fieldRef struct {
	def  *fieldDef
	tok  token
	key  []byte // modeKey only
	mode keyMode
}

func (f *fieldRef) setKey(k string) {
	switch {
	case strings.EqualFold(k, "#Keys"):
		f.mode = modeKeys
	case strings.EqualFold(k, "#Values"):
		f.mode = modeValues
	case strings.EqualFold(k, "#KVS"):
		f.mode = modeKVS
	default:
		f.key = []byte(k)
	}
}

func (f fieldRef) name() string {
	if f.def.keyed() {
		return strconv.Quote(f.tok.text + "(...)")
	}
	return strconv.Quote(f.def.name)
}

// source returns the reader for a text or keyed field.
func (f fieldRef) source() source {
	if f.def.keyed() {
		return &pairSource{coll: f.def.coll, mode: f.mode, key: f.key}
	}
	return &textSource{get: f.def.text}
}

// A source reads the values of a text field. Keyed fields can have several
// values (repeated headers or query keys); single fields have at most one.
type source interface {
	// each reports whether m accepts any value (hit) and whether the field
	// has any value at all (present; false means null/absent).
	each(ctx *fasthttp.RequestCtx, m matcher) (hit, present bool)
	// appendTo appends the values joined with "," (nothing when absent).
	appendTo(dst []byte, ctx *fasthttp.RequestCtx) []byte
}

type textSource struct {
	get func(ctx *fasthttp.RequestCtx) ([]byte, bool)
}

func (s *textSource) each(ctx *fasthttp.RequestCtx, m matcher) (hit, present bool) {
	v, ok := s.get(ctx)
	if !ok {
		return false, false
	}
	return m.match(v), true
}

func (s *textSource) appendTo(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	v, _ := s.get(ctx)
	return append(dst, v...)
}

// pairSource reads Header/Query/Cookie/Form. Keys are matched
// case-insensitively, as ASP.NET does for all four collections. Iteration
// uses fasthttp's range-over-func iterators; the compiler inlines them so
// the loop bodies do not escape and nothing is allocated.
type pairSource struct {
	coll collection
	mode keyMode
	key  []byte
}

// scan accumulates the result of one each() call.
type scan struct {
	hit, present bool
}

// visit feeds one name/value pair to m and reports whether to stop.
func (st *scan) visit(s *pairSource, k, v []byte, m matcher) bool {
	switch s.mode {
	case modeKey:
		if !bytes.EqualFold(k, s.key) {
			return false
		}
		st.present = true
		st.hit = m.match(v)
	case modeKeys:
		st.present = true
		st.hit = m.match(k)
	case modeValues:
		st.present = true
		st.hit = m.match(v)
	case modeKVS:
		st.present = true
		st.hit = m.match(k) || m.match(v)
	}
	return st.hit
}

func (s *pairSource) each(ctx *fasthttp.RequestCtx, m matcher) (hit, present bool) {
	var st scan
	switch s.coll {
	case collHeader:
		for k, v := range ctx.Request.Header.All() {
			if st.visit(s, k, v, m) {
				break
			}
		}
	case collQuery:
		for k, v := range ctx.QueryArgs().All() {
			if st.visit(s, k, v, m) {
				break
			}
		}
	case collCookie:
		for k, v := range ctx.Request.Header.Cookies() {
			if st.visit(s, k, v, m) {
				break
			}
		}
	case collForm:
		switch formKind(ctx) {
		case formURLEncoded:
			for k, v := range ctx.PostArgs().All() {
				if st.visit(s, k, v, m) {
					break
				}
			}
		case formMultipart:
			f, err := ctx.MultipartForm()
			if err != nil {
				break
			}
		values:
			for k, vs := range f.Value {
				for _, v := range vs {
					if st.visit(s, view(k), view(v), m) {
						break values
					}
				}
			}
		}
	}
	return st.hit, st.present
}

// joiner appends pairs for appendTo, with "," between values.
type joiner struct {
	dst   []byte
	first bool
}

func (j *joiner) add(s *pairSource, k, v []byte) {
	if s.mode == modeKey && !bytes.EqualFold(k, s.key) {
		return
	}
	if !j.first {
		j.dst = append(j.dst, ',')
	}
	j.first = false
	switch s.mode {
	case modeKey, modeValues:
		j.dst = append(j.dst, v...)
	case modeKeys:
		j.dst = append(j.dst, k...)
	case modeKVS:
		j.dst = append(j.dst, k...)
		j.dst = append(j.dst, '=')
		j.dst = append(j.dst, v...)
	}
}

func (s *pairSource) appendTo(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	j := joiner{dst: dst, first: true}
	switch s.coll {
	case collHeader:
		for k, v := range ctx.Request.Header.All() {
			j.add(s, k, v)
		}
	case collQuery:
		for k, v := range ctx.QueryArgs().All() {
			j.add(s, k, v)
		}
	case collCookie:
		for k, v := range ctx.Request.Header.Cookies() {
			j.add(s, k, v)
		}
	case collForm:
		switch formKind(ctx) {
		case formURLEncoded:
			for k, v := range ctx.PostArgs().All() {
				j.add(s, k, v)
			}
		case formMultipart:
			if f, err := ctx.MultipartForm(); err == nil {
				for k, vs := range f.Value {
					for _, v := range vs {
						j.add(s, view(k), view(v))
					}
				}
			}
		}
	}
	return j.dst
}

// view exposes a string's bytes without copying. Matchers and appends only
// read them, so the string's immutability is preserved.
func view(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

var (
	strHTTP          = []byte("http")
	strHTTPS         = []byte("https")
	strContentLength = []byte(fasthttp.HeaderContentLength)
	strURLEncoded    = []byte("application/x-www-form-urlencoded")
	strMultipart     = []byte("multipart/form-data")
)

func getPath(ctx *fasthttp.RequestCtx) ([]byte, bool) { return ctx.Path(), true }

// appendForwardedPath appends the path as the client sent it, which is
// what vkp forwards: not decoded, "//" and dot-segments kept, without the
// query; "/" when the request-target has none. A template's {Path}.
func appendForwardedPath(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	p := ctx.URI().PathOriginal()
	if len(p) == 0 || p[0] != '/' {
		dst = append(dst, '/')
	}
	return append(dst, p...)
}

// getPathBase is always the empty string: vkp mounts nothing under a base
// path, so ASP.NET's PathBase has no counterpart.
func getPathBase(*fasthttp.RequestCtx) ([]byte, bool) { return nil, true }

func getMethod(ctx *fasthttp.RequestCtx) ([]byte, bool) { return ctx.Method(), true }

func getScheme(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	if ctx.IsTLS() {
		return strHTTPS, true
	}
	return strHTTP, true
}

func getProtocol(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	return ctx.Request.Header.Protocol(), true
}

func nonEmpty(v []byte) ([]byte, bool) { return v, len(v) > 0 }

func getContentType(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	return nonEmpty(ctx.Request.Header.ContentType())
}

func getHost(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	return nonEmpty(ctx.Request.Header.Host())
}

// getQueryString returns the raw query including its leading "?", as
// ASP.NET's Request.QueryString does, sliced out of the request line so no
// copy is needed to prepend the "?".
func getQueryString(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	uri := ctx.Request.Header.RequestURI()
	i := bytes.IndexByte(uri, '?')
	if i < 0 {
		return nil, false
	}
	q := uri[i:]
	if j := bytes.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	return q, true
}

// getContentLength reports the Content-Length header; a chunked or
// length-less request has none (null), unlike "Content-Length: 0".
func getContentLength(ctx *fasthttp.RequestCtx) (int64, bool) {
	if len(ctx.Request.Header.PeekCanonical(strContentLength)) == 0 {
		return 0, false
	}
	n := ctx.Request.Header.ContentLength()
	if n < 0 {
		return 0, false
	}
	return int64(n), true
}

func getIsHTTPS(ctx *fasthttp.RequestCtx) bool { return ctx.IsTLS() }

type formType uint8

const (
	formNone formType = iota
	formURLEncoded
	formMultipart
)

func formKind(ctx *fasthttp.RequestCtx) formType {
	ct := ctx.Request.Header.ContentType()
	switch {
	case mediaTypeIs(ct, strURLEncoded):
		return formURLEncoded
	case mediaTypeIs(ct, strMultipart):
		return formMultipart
	}
	return formNone
}

func hasFormContentType(ctx *fasthttp.RequestCtx) bool { return formKind(ctx) != formNone }

// mediaTypeIs compares the media type of a Content-Type value, ignoring
// case and parameters.
func mediaTypeIs(ct, mt []byte) bool {
	ct = bytes.TrimLeft(ct, " \t")
	if len(ct) < len(mt) || !bytes.EqualFold(ct[:len(mt)], mt) {
		return false
	}
	if len(ct) == len(mt) {
		return true
	}
	c := ct[len(mt)]
	return c == ';' || c == ' ' || c == '\t'
}
