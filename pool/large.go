package pool

import "sync"

// Large buffers (256 KiB to 16 MiB) are kept by size class, powers of two,
// in a reserve that, unlike a sync.Pool, garbage collections do not empty:
// a process under steady large-body load writes the same memory again
// instead of fresh pages. A fresh page costs a page fault, which on some
// virtual machines costs more than copying the page's bytes several times;
// on a cold start, when every collection emptied the pool, those faults
// fed a latency spiral (BENCHMARKS.md, cold-start).
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

// reserve is the large buffers kept, at most keep bytes of them.
type reserve struct {
	mu    sync.Mutex
	free  [largeClasses][]*Buffer
	bytes int
	keep  int
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
	r.bytes -= cap(b.B)
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
	if r.bytes+cap(b.B) > r.keep {
		return false
	}
	b.B = b.B[:0]
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
	return p.large.bytes
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
