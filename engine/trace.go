package engine

import (
	"math/rand/v2"

	"github.com/valyala/fasthttp"
)

// W3C trace context (traceparent) as vkp handles it with --sampler trace:
// a request's log lines are written only when its trace is sampled, and
// the trace goes on upstream with vkp as its new parent: the client's
// trace id and flags, a span id of vkp's. A request without a valid
// traceparent starts a trace, sampled.

// traceContext is a request's trace.
type traceContext struct {
	id    [16]byte
	flags byte
	ok    bool // parsed or made: id and flags are set
}

// sampled reports whether the trace is sampled (a request without one
// counts as sampled).
func (t traceContext) sampled() bool { return !t.ok || t.flags&1 == 1 }

// parseTraceparent reads "00-<32 hex>-<16 hex>-<2 hex>" (other versions:
// the same first fields). An all-zero id, or version ff, is invalid.
func parseTraceparent(v []byte, t *traceContext) bool {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || len(v) > 55 && (v[0] == '0' && v[1] == '0' || v[55] != '-') {
		return false
	}
	if v[0] == 'f' && v[1] == 'f' {
		return false
	}
	var ver [1]byte
	var span [8]byte
	var fl [1]byte
	if !unhexTo(ver[:], v[0:2]) || !unhexTo(t.id[:], v[3:35]) || !unhexTo(span[:], v[36:52]) || !unhexTo(fl[:], v[53:55]) {
		return false
	}
	if t.id == [16]byte{} || span == [8]byte{} {
		return false
	}
	t.flags, t.ok = fl[0], true
	return true
}

func unhexTo(dst, src []byte) bool {
	for i := range dst {
		hi, lo := unhexLower(src[2*i]), unhexLower(src[2*i+1])
		if hi < 0 || lo < 0 {
			return false
		}
		dst[i] = byte(hi<<4 | lo)
	}
	return true
}

// unhexLower reads a lowercase hex digit (traceparent allows no other).
func unhexLower(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// traceUpstream reads the request's traceparent, or starts a trace, and
// sets the traceparent the upstream gets.
func traceUpstream(h *fasthttp.RequestHeader) traceContext {
	var t traceContext
	if !parseTraceparent(h.Peek("traceparent"), &t) {
		id := [2]uint64{rand.Uint64(), rand.Uint64() | 1}
		for i := 0; i < 8; i++ {
			t.id[i], t.id[8+i] = byte(id[0]>>(8*i)), byte(id[1]>>(8*i))
		}
		t.flags, t.ok = 1, true
	}
	var span [8]byte
	s := rand.Uint64() | 1
	for i := range span {
		span[i] = byte(s >> (8 * i))
	}
	var b [55]byte
	v := append(b[:0], "00-"...)
	v = appendHex(v, t.id[:])
	v = append(v, '-')
	v = appendHex(v, span[:])
	v = append(v, '-')
	v = append(v, "0123456789abcdef"[t.flags>>4], "0123456789abcdef"[t.flags&15])
	h.SetBytesV("traceparent", v)
	return t
}

// appendTraceID appends a trace id in hex.
func (t traceContext) appendID(dst []byte) []byte { return appendHex(dst, t.id[:]) }

func appendHex(dst, b []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&15])
	}
	return dst
}
