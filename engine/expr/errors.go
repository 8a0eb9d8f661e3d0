package expr

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Error is a compile error in a Statement or CacheKey template. Line and Col
// are 1-based and point at the first character of the offending token; Col
// counts runes, so it matches what an editor shows. Token is the offending
// source text ("" at the end of the input) and Msg the complete message,
// which already quotes Token.
type Error struct {
	Line, Col int
	Token     string
	Msg       string
}

// Error formats the error as "line:col: message", the form the engine
// prefixes with the JSON path of the config value.
func (e *Error) Error() string {
	return strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col) + ": " + e.Msg
}

// newError builds an *Error for the token that starts at byte offset pos
// of src.
func newError(src string, pos int, tok string, format string, args ...any) *Error {
	if pos > len(src) {
		pos = len(src)
	}
	line, lineStart := 1, 0
	for i := 0; i < pos; i++ {
		if src[i] == '\n' {
			line++
			lineStart = i + 1
		}
	}
	return &Error{
		Line:  line,
		Col:   utf8.RuneCountInString(src[lineStart:pos]) + 1,
		Token: tok,
		Msg:   fmt.Sprintf(format, args...),
	}
}

// bailout carries an *Error out of the recursive-descent parser; only the
// compiler entry points recover it, so any other panic still crashes loudly.
type bailout struct{ err *Error }

func catch(err *error) {
	if r := recover(); r != nil {
		b, ok := r.(bailout)
		if !ok {
			panic(r)
		}
		*err = b.err
	}
}
