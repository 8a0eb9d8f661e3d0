package expr

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokIdent
	tokString
	tokNumber
	tokOp
	tokLParen
	tokRParen
	tokComma
	tokLBrace
	tokRBrace
)

// op is a comparison operator.
type op uint8

const (
	opEq op = iota + 1
	opNe
	opLt
	opLe
	opGt
	opGe
	opMatch
	opIn
)

var opText = [...]string{opEq: "=", opNe: "!=", opLt: "<", opLe: "<=", opGt: ">", opGe: ">=", opMatch: "~=", opIn: "in"}

func (o op) String() string { return opText[o] }

// mirror returns the operator that keeps the meaning when the operands swap
// sides: 3 > ContentLength is ContentLength < 3. (VKProxy negated instead,
// which is wrong at equality; DESIGN.md asks for the mathematical form.)
func (o op) mirror() op {
	switch o {
	case opLt:
		return opGt
	case opLe:
		return opGe
	case opGt:
		return opLt
	case opGe:
		return opLe
	}
	return o
}

func (o op) ordering() bool { return o >= opLt && o <= opGe }

type token struct {
	kind tokKind
	pos  int    // byte offset of the token in the source
	text string // the token as written
	val  string // decoded value of a string literal
	op   op     // operator of a tokOp
}

// describe names a token for "found ..." messages.
func (t token) describe() string {
	if t.kind == tokEOF {
		return "end of input"
	}
	return strconv.Quote(t.text)
}

// lexer splits a Statement (or the inside of a template field) into tokens.
// It follows VKProxy's tokenizer: whitespace is space, tab, CR and LF;
// strings keep every backslash except the one escaping their own quote, so
// '\d+' reaches the regex compiler intact.
type lexer struct {
	src string
	pos int
}

func (l *lexer) fail(pos int, tok string, format string, args ...any) {
	panic(bailout{newError(l.src, pos, tok, format, args...)})
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

func (l *lexer) next() token {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			break
		}
		l.pos++
	}
	start := l.pos
	if start >= len(l.src) {
		return token{kind: tokEOF, pos: start}
	}
	c := l.src[start]
	switch {
	case isIdentStart(c):
		end := start + 1
		for end < len(l.src) && isIdentChar(l.src[end]) {
			end++
		}
		l.pos = end
		return token{kind: tokIdent, pos: start, text: l.src[start:end]}
	case isDigit(c) || (c == '-' && start+1 < len(l.src) && isDigit(l.src[start+1])):
		return l.number(start)
	case c == '\'' || c == '"':
		return l.string(start, c)
	}
	one := func(k tokKind) token {
		l.pos = start + 1
		return token{kind: k, pos: start, text: l.src[start : start+1]}
	}
	two := func(o op, n int) token {
		l.pos = start + n
		return token{kind: tokOp, pos: start, text: l.src[start : start+n], op: o}
	}
	next := byte(0)
	if start+1 < len(l.src) {
		next = l.src[start+1]
	}
	switch c {
	case '(':
		return one(tokLParen)
	case ')':
		return one(tokRParen)
	case ',':
		return one(tokComma)
	case '{':
		return one(tokLBrace)
	case '}':
		return one(tokRBrace)
	case '=':
		if next == '=' {
			l.fail(start, "==", `unexpected "==", use "=" to compare`)
		}
		return two(opEq, 1)
	case '!':
		if next == '=' {
			return two(opNe, 2)
		}
		l.fail(start, "!", `unexpected "!", use "not" or "!="`)
	case '<':
		if next == '=' {
			return two(opLe, 2)
		}
		if next == '>' {
			l.fail(start, "<>", `unexpected "<>", use "!="`)
		}
		return two(opLt, 1)
	case '>':
		if next == '=' {
			return two(opGe, 2)
		}
		return two(opGt, 1)
	case '~':
		if next == '=' {
			return two(opMatch, 2)
		}
	case '&':
		if next == '&' {
			l.fail(start, "&&", `unexpected "&&", use "and"`)
		}
	case '|':
		if next == '|' {
			l.fail(start, "||", `unexpected "||", use "or"`)
		}
	}
	r, size := utf8.DecodeRuneInString(l.src[start:])
	if r == utf8.RuneError && size <= 1 {
		l.fail(start, l.src[start:start+1], "invalid UTF-8 byte %q", l.src[start:start+1])
	}
	tok := l.src[start : start+size]
	l.fail(start, tok, "unexpected character %q", tok)
	panic("unreachable")
}

// number scans -?digits[.digits]. Anything glued to it (a second dot, a
// letter) makes the whole run a malformed number rather than two tokens, so
// the error points at what the user wrote.
func (l *lexer) number(start int) token {
	i := start
	if l.src[i] == '-' {
		i++
	}
	for i < len(l.src) && isDigit(l.src[i]) {
		i++
	}
	ok := true
	if i < len(l.src) && l.src[i] == '.' {
		i++
		if i >= len(l.src) || !isDigit(l.src[i]) {
			ok = false
		}
		for i < len(l.src) && isDigit(l.src[i]) {
			i++
		}
	}
	if i < len(l.src) && (isIdentChar(l.src[i]) || l.src[i] == '.') {
		ok = false
	}
	if !ok {
		for i < len(l.src) && (isIdentChar(l.src[i]) || l.src[i] == '.') {
			i++
		}
		l.fail(start, l.src[start:i], "malformed number %q", l.src[start:i])
	}
	l.pos = i
	return token{kind: tokNumber, pos: start, text: l.src[start:i]}
}

func (l *lexer) string(start int, quote byte) token {
	var b strings.Builder
	plain := true // no escapes seen: the value is a substring of src
	i := start + 1
	for i < len(l.src) {
		c := l.src[i]
		switch {
		case c == quote:
			l.pos = i + 1
			val := l.src[start+1 : i]
			if !plain {
				val = b.String()
			}
			return token{kind: tokString, pos: start, text: l.src[start : i+1], val: val}
		case c == '\\' && i+1 < len(l.src):
			if plain {
				b.WriteString(l.src[start+1 : i])
				plain = false
			}
			if l.src[i+1] == quote {
				b.WriteByte(quote)
			} else {
				// Kept verbatim, including a second backslash, so regex
				// escapes such as \d and \\ survive.
				b.WriteByte('\\')
				b.WriteByte(l.src[i+1])
			}
			i += 2
			continue
		}
		if !plain {
			b.WriteByte(c)
		}
		i++
	}
	l.fail(start, l.src[start:], "unterminated string %s", strconv.Quote(l.src[start:]))
	panic("unreachable")
}
