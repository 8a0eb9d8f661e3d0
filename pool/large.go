package pool

import (
	"sync"
	"unsafe"
)

// Large buffers (256 KiB to 16 MiB) are kept by size class, powers of two,
// in a reserve that, unlike a sync.Pool, garbage collections do not empty:
// a process under steady large-body load writes the same memory again
// instead of fresh pages. A fresh page costs a page fault, which on some
// virtual machines costs more than copying the page's bytes several times;
// on a cold start, when every collection emptied the pool, those faults
// fed a latency spiral (BENCHMARKS.md, cold-start).
//
// New large buffers are cut first from a slab outside the Go heap, in
// transparent huge pages (slab_linux.go): 128 MiB reserved at start and
// resident only as it is used, never given back, its buffers always
// returning to the reserve. A 2 MiB page fault in place of 512 small ones
// is what kept a mirrored route's cold start from collapsing (70,000 faults
// and 1.2 s p99 in the first 3 s without it). Past the slab, buffers come
// from the heap, and up to keep bytes of those are kept.
const (
	largeMinShift = 18 // 256 KiB
	largeClasses  = 7  // 256 KiB .. 16 MiB
)

// largeClass returns the class whose buffers hold n bytes, or -1 when n
// is beyond the largest.
func largeClass(n int) int {
	for c := 0; c < largeClasses; c++ {
		if n <= 1<<(largeMinShift+c) {
			return c
		}
	}
	return -1
}

// reserve is the large buffers kept: the slab's, and at most keep bytes of
// heap ones.
type reserve struct {
	mu    sync.Mutex
	free  [largeClasses][]*Buffer
	bytes int // heap buffers kept
	slabs int // slab buffers kept
	keep  int

	slab []byte // the slab: len is what has been cut, cap all of it
}

// cut returns a new buffer of size bytes from the slab, or nil when the
// slab has no room left (or there is none).
func (r *reserve) cut(size int) *Buffer {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.slab)
	if cap(r.slab)-n < size {
		return nil
	}
	r.slab = r.slab[:n+size]
	return &Buffer{B: r.slab[n : n : n+size]}
}

// inSlab reports whether b's memory is the slab's.
func (r *reserve) inSlab(b []byte) bool {
	if cap(b) == 0 || cap(r.slab) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b[:1])))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(r.slab[:1])))
	return p >= base && p < base+uintptr(cap(r.slab))
}

func (r *reserve) get(c int) *Buffer {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.free[c]
	if len(f) == 0 {
		return nil
	}
	b := f[len(f)-1]
	f[len(f)-1] = nil
	r.free[c] = f[:len(f)-1]
	if r.inSlab(b.B) {
		r.slabs -= cap(b.B)
	} else {
		r.bytes -= cap(b.B)
	}
	return b
}

// put keeps b, when its capacity is exactly a class's size (the reserve's
// own buffers: a buffer's capacity is what its holder is charged for, so
// a class hands out no more than its size) and there is room.
func (r *reserve) put(b *Buffer) bool {
	c := -1
	for k := 0; k < largeClasses; k++ {
		if cap(b.B) == 1<<(largeMinShift+k) {
			c = k
			break
		}
	}
	if c < 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.B = b.B[:0]
	if r.inSlab(b.B) {
		// Always kept: nothing else would ever reuse this memory.
		r.free[c] = append(r.free[c], b)
		r.slabs += cap(b.B)
		return true
	}
	if r.bytes+cap(b.B) > r.keep {
		return false
	}
	r.free[c] = append(r.free[c], b)
	r.bytes += cap(b.B)
	return true
}

// Kept reports the bytes of large buffers the pool keeps now.
func (p *Pool) Kept() int {
	if p.large == nil {
		return 0
	}
	p.large.mu.Lock()
	defer p.large.mu.Unlock()
	return p.large.bytes + p.large.slabs
}

// GetCap returns an empty buffer with room for at least n bytes: for
// 256 KiB and more, one of the kept large buffers of n's class, or a new
// one of the class's size.
func (p *Pool) GetCap(n int) *Buffer {
	if p.large != nil {
		if c := largeClass(n); c >= 0 && n > 1<<(largeMinShift-1) {
			if b := p.large.get(c); b != nil {
				return b
			}
			if b := p.large.cut(1 << (largeMinShift + c)); b != nil {
				return b
			}
			return &Buffer{B: make([]byte, 0, 1<<(largeMinShift+c))}
		}
	}
	b := p.Get()
	if cap(b.B) < n || cap(b.B) > 2*n && cap(b.B) > 64<<10 {
		// Too small, or much larger than asked: a holder is charged for
		// capacity.
		b.B = make([]byte, 0, n)
	}
	return b
}
