package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/tailscale/hujson"
)

// The config loader reads VKProxy's appsettings-style JSON, which allows
// // and /* */ comments and trailing commas (the seeds' examples use both).
// tailscale/hujson parses that dialect into a syntax tree that keeps every
// value's byte offset; the loader turns it into a small ordered tree of its
// own (jnode) that lets it detect duplicate keys, match keys
// case-insensitively and name every problem by JSON path and line:col.

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

// parseJSONC parses a whole document. Syntax errors carry line:col.
func parseJSONC(src []byte) (*jnode, error) {
	if len(bytes.TrimSpace(src)) == 0 {
		return nil, errors.New("config is empty")
	}
	v, err := hujson.Parse(src)
	if err != nil {
		// "hujson: line 3, column 5: invalid character ..."
		msg := strings.TrimPrefix(err.Error(), "hujson: ")
		if strings.HasPrefix(msg, "line ") {
			var l, c int
			if _, serr := fmt.Sscanf(msg, "line %d, column %d:", &l, &c); serr == nil {
				_, rest, _ := strings.Cut(msg, ": ")
				return nil, fmt.Errorf("%d:%d: invalid JSON: %s", l, c, rest)
			}
		}
		return nil, fmt.Errorf("invalid JSON: %s", msg)
	}
	return fromHuJSON(&v), nil
}

func fromHuJSON(v *hujson.Value) *jnode {
	n := &jnode{off: v.StartOffset}
	switch t := v.Value.(type) {
	case hujson.Literal:
		switch t.Kind() {
		case 'n':
			n.kind = jNull
		case 't', 'f':
			n.kind, n.b = jBool, t.Bool()
		case '"':
			n.kind, n.text = jString, t.String()
		default:
			n.kind, n.text = jNumber, string(t)
		}
	case *hujson.Object:
		n.kind = jObject
		for i := range t.Members {
			m := &t.Members[i]
			key, _ := m.Name.Value.(hujson.Literal)
			n.keys = append(n.keys, key.String())
			n.koffs = append(n.koffs, m.Name.StartOffset)
			n.vals = append(n.vals, fromHuJSON(&m.Value))
		}
	case *hujson.Array:
		n.kind = jArray
		for i := range t.Elements {
			n.items = append(n.items, fromHuJSON(&t.Elements[i]))
		}
	}
	return n
}
