package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	json "github.com/goccy/go-json"
)

// The config loader reads VKProxy's appsettings-style JSON, which allows
// // and /* */ comments and trailing commas (the seeds' examples use both).
// It strips those in place (keeping every byte offset, so errors keep their
// line:col), then walks the document with goccy/go-json's tokenizer into a
// small ordered tree that remembers where each value starts. The tree lets
// the loader detect duplicate keys, match keys case-insensitively and name
// every problem by JSON path and position.

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jObject
	jArray
)

func (k jkind) String() string {
	return [...]string{"null", "boolean", "number", "string", "object", "array"}[k]
}

type jnode struct {
	kind  jkind
	off   int    // offset of the value's first byte in the source
	text  string // string value, or the number's literal text
	b     bool
	keys  []string // object keys in document order
	koffs []int    // offset of each key
	vals  []*jnode // object values, parallel to keys
	items []*jnode // array items
}

// stripJSONC blanks out comments and trailing commas, keeping offsets.
func stripJSONC(src []byte) []byte {
	b := bytes.Clone(src)
	inStr := false
	lastComma := -1 // offset of a comma that may turn out to be trailing
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
			lastComma = -1
		case c == '/' && i+1 < len(b) && b[i+1] == '/':
			for ; i < len(b) && b[i] != '\n'; i++ {
				b[i] = ' '
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			end := bytes.Index(b[i+2:], []byte("*/"))
			stop := len(b)
			if end >= 0 {
				stop = i + 2 + end + 2
			}
			for ; i < stop; i++ {
				if b[i] != '\n' && b[i] != '\r' {
					b[i] = ' '
				}
			}
			i--
		case c == ',':
			lastComma = i
		case c == '}' || c == ']':
			if lastComma >= 0 {
				b[lastComma] = ' '
			}
			lastComma = -1
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			lastComma = -1
		}
	}
	return b
}

// lineCol turns a byte offset into 1-based line and column.
func lineCol(src []byte, off int) (int, int) {
	if off > len(src) {
		off = len(src)
	}
	if off < 0 {
		off = 0
	}
	line := 1 + bytes.Count(src[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(src[:off], '\n')
	return line, col
}

type jparser struct {
	src []byte
	dec *json.Decoder
}

// parseJSONC parses a whole document. Syntax errors carry line:col.
func parseJSONC(src []byte) (*jnode, []byte, error) {
	clean := stripJSONC(src)
	if len(bytes.TrimSpace(clean)) == 0 {
		return nil, clean, errors.New("config is empty")
	}
	p := &jparser{src: clean, dec: json.NewDecoder(bytes.NewReader(clean))}
	p.dec.UseNumber()
	n, err := p.value()
	if err != nil {
		return nil, clean, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		l, c := lineCol(clean, p.start())
		return nil, clean, fmt.Errorf("%d:%d: unexpected data after the top-level value", l, c)
	}
	return n, clean, nil
}

// start is the offset where the next token begins.
func (p *jparser) start() int {
	i := int(p.dec.InputOffset())
	for i < len(p.src) {
		switch p.src[i] {
		case ' ', '\t', '\n', '\r', ':', ',':
			i++
			continue
		}
		break
	}
	return i
}

func (p *jparser) syntax(err error) error {
	var se *json.SyntaxError
	off := p.start()
	if errors.As(err, &se) {
		off = int(se.Offset)
	}
	l, c := lineCol(p.src, off)
	msg := err.Error()
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		msg = "unexpected end of input"
	}
	return fmt.Errorf("%d:%d: invalid JSON: %s", l, c, strings.TrimPrefix(msg, "json: "))
}

func (p *jparser) value() (*jnode, error) {
	off := p.start()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	return p.fromToken(tok, off)
}

func (p *jparser) fromToken(tok json.Token, off int) (*jnode, error) {
	n := &jnode{off: off}
	switch t := tok.(type) {
	case nil:
		n.kind = jNull
	case bool:
		n.kind, n.b = jBool, t
	case json.Number:
		n.kind, n.text = jNumber, string(t)
	case float64:
		n.kind, n.text = jNumber, fmt.Sprint(t)
	case string:
		n.kind, n.text = jString, t
	case json.Delim:
		switch t {
		case '{':
			n.kind = jObject
			for p.dec.More() {
				koff := p.start()
				kt, err := p.dec.Token()
				if err != nil {
					return nil, p.syntax(err)
				}
				k, ok := kt.(string)
				if !ok {
					l, c := lineCol(p.src, koff)
					return nil, fmt.Errorf("%d:%d: invalid JSON: object key must be a string", l, c)
				}
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.koffs = append(n.koffs, koff)
				n.vals = append(n.vals, v)
			}
			if _, err := p.dec.Token(); err != nil {
				return nil, p.syntax(err)
			}
		case '[':
			n.kind = jArray
			for p.dec.More() {
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := p.dec.Token(); err != nil {
				return nil, p.syntax(err)
			}
		default:
			l, c := lineCol(p.src, off)
			return nil, fmt.Errorf("%d:%d: invalid JSON: unexpected %q", l, c, string(t))
		}
	default:
		l, c := lineCol(p.src, off)
		return nil, fmt.Errorf("%d:%d: invalid JSON: unexpected token", l, c)
	}
	return n, nil
}
