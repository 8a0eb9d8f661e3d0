package expr

import (
	"bytes"
	"math"
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"
)

// Predicate is a compiled Statement. It is immutable and safe for
// concurrent use; Eval allocates nothing.
type Predicate struct {
	src   string
	eval  evalFunc
	reads bool // a Form field: evaluating it reads the body
}

type evalFunc func(ctx *fasthttp.RequestCtx) bool

// Compile parses and type-checks a Statement. Every problem is reported as
// an *Error with the position of the offending token.
func Compile(src string) (pred *Predicate, err error) {
	defer catch(&err)
	if err := newerSyntax(src, false); err != nil {
		return nil, err
	}
	p := newParser(src, 0)
	n := p.parseStatement()
	c := compiler{src: src}
	eval := c.node(n)
	return &Predicate{src: src, eval: eval, reads: c.readsBody}, nil
}

// ReadsBody reports whether the Statement looks at Form fields, which come
// from the request body: the proxy must have read the body before Eval.
func (p *Predicate) ReadsBody() bool { return p != nil && p.reads }

// Eval reports whether the request satisfies the Statement. A nil
// *Predicate (no Statement configured) matches every request. Eval may
// parse the query string, the cookies or a form body of ctx through
// fasthttp's lazily-parsed accessors, exactly as the forwarding code would.
func (p *Predicate) Eval(ctx *fasthttp.RequestCtx) bool {
	if p == nil {
		return true
	}
	return p.eval(ctx)
}

// String returns the source of the Statement.
func (p *Predicate) String() string { return p.src }

type compiler struct {
	src       string
	readsBody bool
}

func (c *compiler) fail(t token, format string, args ...any) {
	panic(bailout{newError(c.src, t.pos, t.text, format, args...)})
}

func (c *compiler) node(n node) evalFunc {
	switch n := n.(type) {
	case *logicNode:
		x, y := c.node(n.x), c.node(n.y)
		if n.and {
			return func(ctx *fasthttp.RequestCtx) bool { return x(ctx) && y(ctx) }
		}
		return func(ctx *fasthttp.RequestCtx) bool { return x(ctx) || y(ctx) }
	case *notNode:
		x := c.node(n.x)
		return func(ctx *fasthttp.RequestCtx) bool { return !x(ctx) }
	case *cmpNode:
		switch n.field.def.kind {
		case kindBool:
			return c.cmpBool(n)
		case kindNumber:
			return c.cmpNumber(n)
		}
		fn := c.cmpText(n)
		if n.field.def.coll == collForm {
			c.readsBody = true
			// Form fields exist only for form bodies; on any other body
			// every comparison (even != and = null) is false, as in VKProxy.
			return func(ctx *fasthttp.RequestCtx) bool { return hasFormContentType(ctx) && fn(ctx) }
		}
		return fn
	}
	panic("expr: unknown node type")
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// cmpText compiles a comparison on a text or keyed field. Multi-valued
// fields match when any value matches; != is always the negation of =.
func (c *compiler) cmpText(n *cmpNode) evalFunc {
	src := n.field.source()
	if n.op == opIn {
		m := &inMatcher{}
		hasNull := false
		for _, l := range n.list {
			switch l.kind {
			case litString:
				m.strs = append(m.strs, []byte(l.str))
			case litBool:
				m.strs = append(m.strs, []byte(boolText(l.b)))
			case litNumber:
				m.nums = append(m.nums, l.num)
			case litNull:
				hasNull = true
			}
		}
		if hasNull {
			return func(ctx *fasthttp.RequestCtx) bool {
				hit, present := src.each(ctx, m)
				return hit || !present
			}
		}
		return anyHit(src, m, false)
	}

	l := n.lit
	var m matcher
	switch l.kind {
	case litNull:
		switch n.op {
		case opEq:
			return func(ctx *fasthttp.RequestCtx) bool {
				_, present := src.each(ctx, never{})
				return !present
			}
		case opNe:
			return func(ctx *fasthttp.RequestCtx) bool {
				_, present := src.each(ctx, never{})
				return present
			}
		}
		c.fail(n.opTok, `operator %s cannot compare with null, only = and != can`, n.op)
	case litString, litBool:
		text := l.str
		if l.kind == litBool {
			text = boolText(l.b)
		}
		switch n.op {
		case opEq, opNe:
			m = &eqMatcher{lit: []byte(text)}
		case opMatch:
			if l.kind != litString {
				c.fail(l.tok, "~= needs a quoted regex pattern, found %s", l.tok.describe())
			}
			m = &regexMatcher{re: c.regex(l)}
		default:
			if !n.field.def.numeric() {
				c.fail(n.opTok, "operator %s is not supported for field %s; use =, !=, ~= or in", n.op, n.field.name())
			}
			c.fail(l.tok, "operator %s needs a number, found %s", n.op, l.tok.describe())
		}
	case litNumber:
		if n.op == opMatch {
			c.fail(l.tok, "~= needs a quoted regex pattern, found %s", l.tok.describe())
		}
		if n.op.ordering() && !n.field.def.numeric() {
			c.fail(n.opTok, "operator %s is not supported for field %s; use =, !=, ~= or in", n.op, n.field.name())
		}
		o := n.op
		if o == opNe {
			o = opEq
		}
		m = &numMatcher{op: o, n: l.num}
	}
	return anyHit(src, m, n.op == opNe)
}

func anyHit(src source, m matcher, negate bool) evalFunc {
	if negate {
		return func(ctx *fasthttp.RequestCtx) bool {
			hit, _ := src.each(ctx, m)
			return !hit
		}
	}
	return func(ctx *fasthttp.RequestCtx) bool {
		hit, _ := src.each(ctx, m)
		return hit
	}
}

// regex compiles a ~= pattern once: case-insensitive and unanchored, like
// .NET's Regex(pattern, IgnoreCase).IsMatch.
func (c *compiler) regex(l literal) *regexp.Regexp {
	if strings.TrimSpace(l.str) == "" {
		c.fail(l.tok, "empty regex pattern %s", l.tok.describe())
	}
	re, err := regexp.Compile("(?i)" + l.str)
	if err != nil {
		c.fail(l.tok, "invalid regex pattern %s: %s", l.tok.describe(), strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return re
}

// numberLit returns the numeric value of a literal compared with
// ContentLength; numeric strings are accepted as VKProxy's Convert.ToInt64
// did.
func (c *compiler) numberLit(f fieldRef, l literal) float64 {
	switch l.kind {
	case litNumber:
		return l.num
	case litString:
		if v, ok := parseNum([]byte(l.str)); ok {
			return v
		}
	}
	c.fail(l.tok, "field %s compares with numbers or null, found %s", f.name(), l.tok.describe())
	return 0
}

func (c *compiler) cmpNumber(n *cmpNode) evalFunc {
	get := n.field.def.number
	if n.op == opMatch {
		c.fail(n.opTok, "operator ~= is not supported for field %s", n.field.name())
	}
	if n.op == opIn {
		var nums []float64
		hasNull := false
		for _, l := range n.list {
			if l.kind == litNull {
				hasNull = true
				continue
			}
			nums = append(nums, c.numberLit(n.field, l))
		}
		return func(ctx *fasthttp.RequestCtx) bool {
			v, ok := get(ctx)
			if !ok {
				return hasNull
			}
			f := float64(v)
			for _, x := range nums {
				if f == x {
					return true
				}
			}
			return false
		}
	}
	if n.lit.kind == litNull {
		switch n.op {
		case opEq:
			return func(ctx *fasthttp.RequestCtx) bool { _, ok := get(ctx); return !ok }
		case opNe:
			return func(ctx *fasthttp.RequestCtx) bool { _, ok := get(ctx); return ok }
		}
		c.fail(n.opTok, `operator %s cannot compare with null, only = and != can`, n.op)
	}
	x := c.numberLit(n.field, n.lit)
	o := n.op
	if o == opNe {
		return func(ctx *fasthttp.RequestCtx) bool {
			v, ok := get(ctx)
			return !ok || float64(v) != x
		}
	}
	return func(ctx *fasthttp.RequestCtx) bool {
		v, ok := get(ctx)
		return ok && cmpNum(o, float64(v), x)
	}
}

func (c *compiler) boolLit(f fieldRef, l literal) bool {
	switch {
	case l.kind == litBool:
		return l.b
	case l.kind == litNumber:
		return l.num != 0 // as VKProxy converts: IsHttps = 0 is IsHttps = false
	case l.kind == litString && strings.EqualFold(l.str, "true"):
		return true
	case l.kind == litString && strings.EqualFold(l.str, "false"):
		return false
	}
	c.fail(l.tok, "field %s compares with true or false, found %s", f.name(), l.tok.describe())
	return false
}

func (c *compiler) cmpBool(n *cmpNode) evalFunc {
	get := n.field.def.boolean
	switch n.op {
	case opIn:
		var set [2]bool
		for _, l := range n.list {
			if c.boolLit(n.field, l) {
				set[1] = true
			} else {
				set[0] = true
			}
		}
		return func(ctx *fasthttp.RequestCtx) bool {
			if get(ctx) {
				return set[1]
			}
			return set[0]
		}
	case opEq, opNe:
		want := c.boolLit(n.field, n.lit) == (n.op == opEq)
		return func(ctx *fasthttp.RequestCtx) bool { return get(ctx) == want }
	}
	c.fail(n.opTok, "operator %s is not supported for field %s; use =, != or in", n.op, n.field.name())
	return nil
}

// matcher tests one value of a field. Matchers are built at compile time
// and stored in interfaces then, so calling them allocates nothing.
type matcher interface {
	match(v []byte) bool
}

type never struct{}

func (never) match([]byte) bool { return false }

type eqMatcher struct{ lit []byte }

func (m *eqMatcher) match(v []byte) bool { return bytes.EqualFold(v, m.lit) }

type regexMatcher struct{ re *regexp.Regexp }

func (m *regexMatcher) match(v []byte) bool { return m.re.Match(v) }

// numMatcher compares a value parsed as a number; a value that is not a
// number never matches.
type numMatcher struct {
	op op
	n  float64
}

func (m *numMatcher) match(v []byte) bool {
	f, ok := parseNum(v)
	return ok && cmpNum(m.op, f, m.n)
}

type inMatcher struct {
	strs [][]byte
	nums []float64
}

func (m *inMatcher) match(v []byte) bool {
	for _, s := range m.strs {
		if bytes.EqualFold(v, s) {
			return true
		}
	}
	if len(m.nums) == 0 {
		return false
	}
	f, ok := parseNum(v)
	if !ok {
		return false
	}
	for _, x := range m.nums {
		if f == x {
			return true
		}
	}
	return false
}

func cmpNum(o op, a, b float64) bool {
	switch o {
	case opEq:
		return a == b
	case opNe:
		return a != b
	case opLt:
		return a < b
	case opLe:
		return a <= b
	case opGt:
		return a > b
	case opGe:
		return a >= b
	}
	return false
}

// parseNum parses [+-]digits[.digits] (surrounding spaces allowed) without
// allocating, unlike strconv.ParseFloat whose error path allocates for every
// non-numeric header value. Literals go through the same function, so a
// value and a literal written alike always compare equal.
func parseNum(b []byte) (float64, bool) {
	b = bytes.TrimSpace(b)
	i, neg := 0, false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}
	var mant uint64
	exp, digits := 0, 0
	for ; i < len(b) && isDigit(b[i]); i++ {
		digits++
		if mant < 1e18 {
			mant = mant*10 + uint64(b[i]-'0')
		} else {
			exp++
		}
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && isDigit(b[i]); i++ {
			digits++
			if mant < 1e18 {
				mant = mant*10 + uint64(b[i]-'0')
				exp--
			}
		}
	}
	if digits == 0 || i != len(b) {
		return 0, false
	}
	f := float64(mant)
	if exp > 0 {
		f *= math.Pow10(exp)
	} else if exp < 0 {
		f /= math.Pow10(-exp)
	}
	if neg {
		f = -f
	}
	return f, true
}
