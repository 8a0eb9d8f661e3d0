package pool

import (
	"sync"

	"github.com/valyala/bytebufferpool"
)

// Buffer is a pooled byte buffer. Its B field is the data.
type Buffer = bytebufferpool.ByteBuffer

// Pool hands out *Buffer values and refuses to keep giants.
// The zero value is not usable; build one with New.
//
// Buffers are kept in a sync.Pool (per P), not bytebufferpool's Pool:
// that one counts every Put in shared atomic counters for its size
// calibration, a cache line the CPUs pass back and forth on every
// request; the limit here does what its calibration is for.
type Pool struct {
	p     sync.Pool
	limit int
	large *reserve // nil: large buffers go to p like the others
}

// New returns a pool that discards released buffers whose capacity exceeds
// limit bytes. limit <= 0 means no limit.
func New(limit int) *Pool { return &Pool{limit: limit} }

// NewKeeping is New with a reserve of large buffers (256 KiB and more)
// that garbage collections do not empty (large.go): new ones cut from a
// slab of slab bytes outside the heap, then up to keep bytes of heap ones.
func NewKeeping(limit, keep, slab int) *Pool {
	r := &reserve{keep: keep}
	if slab > 0 {
		r.slab = mapSlab(slab)[:0]
	}
	return &Pool{limit: limit, large: r}
}

// Get returns an empty buffer owned by the caller.
func (p *Pool) Get() *Buffer {
	if b, ok := p.p.Get().(*Buffer); ok {
		return b
	}
	return &Buffer{}
}

// Put returns b to the pool. b must not be used afterwards. Buffers above the
// size limit are left to the garbage collector.
func (p *Pool) Put(b *Buffer) {
	if b == nil {
		return
	}
	if p.limit > 0 && cap(b.B) > p.limit {
		return
	}
	if p.large != nil && cap(b.B) >= 1<<largeMinShift && p.large.put(b) {
		return
	}
	b.B = b.B[:0]
	p.p.Put(b)
}

// Scratch is the pool for short-lived per-request scratch space (header
// values, cache keys): small buffers, anything above 64 KiB is dropped.
var Scratch = New(64 << 10)

// Bodies is the pool for request and response bodies held past a handler
// (mirror copies, cache entries). Buffers above 16 MiB are dropped; large
// ones come from a 128 MiB huge-page slab, then the heap, and are kept
// through garbage collections (the slab's all, 32 MiB of the heap's).
var Bodies = NewKeeping(16<<20, 32<<20, 128<<20)
