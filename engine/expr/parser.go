package expr

import (
	"strings"
)

// maxDepth bounds nesting of parentheses and "not" so a hostile config
// cannot exhaust the stack of the recursive-descent parser.
const maxDepth = 100

// node is a parsed Statement, checked and turned into closures by compile.go.
type node interface{ isNode() }

type logicNode struct {
	and  bool
	x, y node
}

type notNode struct{ x node }

// cmpNode is one comparison, already normalised so the field is on the left.
type cmpNode struct {
	field fieldRef
	op    op
	opTok token
	lit   literal   // the right-hand value, unless op is opIn
	list  []literal // the "in" list
}

func (*logicNode) isNode() {}
func (*notNode) isNode()   {}
func (*cmpNode) isNode()   {}

type litKind uint8

const (
	litString litKind = iota
	litNumber
	litBool
	litNull
)

type literal struct {
	kind litKind
	tok  token
	str  string  // string value, or the number as written
	num  float64 // litNumber
	b    bool    // litBool
}

// operand is one side of a comparison: a field or a literal value.
type operand struct {
	isField bool
	field   fieldRef
	lit     literal
	tok     token
}

type parser struct {
	lx    lexer
	tok   token
	depth int
}

func newParser(src string, pos int) *parser {
	p := &parser{lx: lexer{src: src, pos: pos}}
	p.tok = p.lx.next()
	return p
}

func (p *parser) advance() { p.tok = p.lx.next() }

func (p *parser) fail(t token, format string, args ...any) {
	panic(bailout{newError(p.lx.src, t.pos, t.text, format, args...)})
}

func (p *parser) keyword(kw string) bool {
	return p.tok.kind == tokIdent && strings.EqualFold(p.tok.text, kw)
}

func isKeyword(s string) bool {
	for _, kw := range [...]string{"and", "or", "not", "in"} {
		if strings.EqualFold(s, kw) {
			return true
		}
	}
	return false
}

func (p *parser) enter(t token) {
	p.depth++
	if p.depth > maxDepth {
		p.fail(t, "statement nested too deeply (more than %d levels) at %s", maxDepth, t.describe())
	}
}

// parseStatement parses a whole Statement: or-terms of and-terms, so "and"
// binds tighter than "or" as in SQL.
func (p *parser) parseStatement() node {
	if p.tok.kind == tokEOF {
		p.fail(p.tok, "empty statement")
	}
	n := p.parseOr()
	switch p.tok.kind {
	case tokEOF:
		return n
	case tokRParen:
		p.fail(p.tok, `unmatched ")"`)
	}
	p.fail(p.tok, `expected "and", "or" or end of input, found %s`, p.tok.describe())
	return nil
}

func (p *parser) parseOr() node {
	x := p.parseAnd()
	for p.keyword("or") {
		p.advance()
		x = &logicNode{x: x, y: p.parseAnd()}
	}
	return x
}

func (p *parser) parseAnd() node {
	x := p.parseUnary()
	for p.keyword("and") {
		p.advance()
		x = &logicNode{and: true, x: x, y: p.parseUnary()}
	}
	return x
}

func (p *parser) parseUnary() node {
	switch {
	case p.keyword("not"):
		p.enter(p.tok)
		p.advance()
		x := p.parseUnary()
		p.depth--
		return &notNode{x: x}
	case p.tok.kind == tokLParen:
		open := p.tok
		p.enter(open)
		p.advance()
		x := p.parseOr()
		if p.tok.kind != tokRParen {
			p.fail(p.tok, `expected ")" to close "(" at column %d, found %s`, newError(p.lx.src, open.pos, "", "").Col, p.tok.describe())
		}
		p.advance()
		p.depth--
		return x
	}
	return p.parseComparison()
}

func (p *parser) parseComparison() node {
	left := p.parseOperand()
	switch {
	case p.tok.kind == tokOp:
		opTok := p.tok
		p.advance()
		right := p.parseOperand()
		switch {
		case left.isField && right.isField:
			p.fail(right.tok, "cannot compare field %s with field %s, one side must be a value", left.field.name(), right.field.name())
		case !left.isField && !right.isField:
			p.fail(left.tok, "comparison needs a field on one side, found value %s", left.tok.describe())
		case !left.isField:
			return &cmpNode{field: right.field, op: opTok.op.mirror(), opTok: opTok, lit: left.lit}
		}
		return &cmpNode{field: left.field, op: opTok.op, opTok: opTok, lit: right.lit}
	case p.keyword("in"):
		inTok := p.tok
		if !left.isField {
			p.fail(left.tok, `"in" needs a field on its left, found value %s`, left.tok.describe())
		}
		p.advance()
		return &cmpNode{field: left.field, op: opIn, opTok: inTok, list: p.parseList()}
	case left.isField && left.field.def.kind == kindBool:
		// A bare boolean field reads as "field = true": "IsHttps and ...".
		return &cmpNode{field: left.field, op: opEq, opTok: left.tok, lit: literal{kind: litBool, tok: left.tok, b: true}}
	}
	p.fail(p.tok, "expected operator, found %s", p.tok.describe())
	return nil
}

func (p *parser) parseList() []literal {
	if p.tok.kind != tokLParen {
		p.fail(p.tok, `expected "(" after "in", found %s`, p.tok.describe())
	}
	p.advance()
	if p.tok.kind == tokRParen {
		p.fail(p.tok, `empty "in" list`)
	}
	var list []literal
	for {
		v := p.parseOperand()
		if v.isField {
			p.fail(v.tok, `"in" list takes values only, found field %s`, v.field.name())
		}
		list = append(list, v.lit)
		switch p.tok.kind {
		case tokComma:
			p.advance()
			continue
		case tokRParen:
			p.advance()
			return list
		}
		p.fail(p.tok, `expected "," or ")" in "in" list, found %s`, p.tok.describe())
	}
}

// parseOperand parses a field, a keyed field such as Header('x'), or a
// literal value.
func (p *parser) parseOperand() operand {
	t := p.tok
	switch t.kind {
	case tokString:
		p.advance()
		return operand{lit: literal{kind: litString, tok: t, str: t.val}, tok: t}
	case tokNumber:
		p.advance()
		f, _ := parseNum([]byte(t.text))
		return operand{lit: literal{kind: litNumber, tok: t, str: t.text, num: f}, tok: t}
	case tokIdent:
		switch {
		case strings.EqualFold(t.text, "true"), strings.EqualFold(t.text, "false"):
			p.advance()
			return operand{lit: literal{kind: litBool, tok: t, b: strings.EqualFold(t.text, "true")}, tok: t}
		case strings.EqualFold(t.text, "null"):
			p.advance()
			return operand{lit: literal{kind: litNull, tok: t}, tok: t}
		case isKeyword(t.text):
			p.fail(t, "expected field or value, found keyword %s", t.describe())
		}
		return operand{isField: true, field: p.parseField(), tok: t}
	}
	p.fail(t, "expected field or value, found %s", t.describe())
	return operand{}
}

func (p *parser) parseField() fieldRef {
	t := p.tok
	p.advance()
	def := lookupField(t.text)
	if def == nil {
		if p.tok.kind == tokLParen {
			p.fail(t, "unknown keyed field %s (want Header, Query, Cookie or Form)", t.describe())
		}
		p.fail(t, "unknown field %s", t.describe())
	}
	ref := fieldRef{def: def, tok: t}
	if !def.keyed() {
		if p.tok.kind == tokLParen {
			p.fail(p.tok, `field %s takes no key, found "("`, def.name)
		}
		return ref
	}
	if p.tok.kind != tokLParen {
		p.fail(p.tok, `expected "(" after %s, found %s`, def.name, p.tok.describe())
	}
	p.advance()
	k := p.tok
	if k.kind != tokString {
		p.fail(k, "%s key must be a quoted string, found %s", def.name, k.describe())
	}
	if k.val == "" {
		p.fail(k, "empty %s key %s", def.name, k.describe())
	}
	ref.setKey(k.val)
	p.advance()
	if p.tok.kind != tokRParen {
		p.fail(p.tok, `expected ")" after %s key, found %s`, def.name, p.tok.describe())
	}
	p.advance()
	return ref
}
