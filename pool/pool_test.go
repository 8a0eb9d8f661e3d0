package pool

import (
	"runtime"
	"testing"
)

func TestPutDropsGiants(t *testing.T) {
	p := New(1024)
	big := p.Get()
	big.B = make([]byte, 0, 4096)
	p.Put(big)
	// A dropped giant must not come back: every buffer we get now is small.
	for i := 0; i < 100; i++ {
		b := p.Get()
		if cap(b.B) > 1024 {
			t.Fatalf("got a %d-byte buffer back from a pool limited to 1024", cap(b.B))
		}
		p.Put(b)
	}
}

func TestGetReturnsEmpty(t *testing.T) {
	p := New(0)
	b := p.Get()
	b.B = append(b.B, "hello"...)
	p.Put(b)
	for i := 0; i < 10; i++ {
		b := p.Get()
		if len(b.B) != 0 {
			t.Fatalf("Get returned %d stale bytes", len(b.B))
		}
		p.Put(b)
	}
	p.Put(nil) // must not panic
}

// Large buffers come back from the reserve by size class, survive a
// garbage collection, and the reserve keeps no more than its bytes.
func TestLargeReserve(t *testing.T) {
	p := NewKeeping(16<<20, 3<<20, 0)
	a, b := p.GetCap(1<<20), p.GetCap(700<<10)
	if cap(a.B) != 1<<20 || cap(b.B) != 1<<20 {
		t.Fatalf("caps %d, %d; want the 1 MiB class", cap(a.B), cap(b.B))
	}
	c := p.GetCap(3 << 20)
	if cap(c.B) != 4<<20 {
		t.Fatalf("cap %d for 3 MiB, want 4 MiB", cap(c.B))
	}
	a.B = append(a.B, "x"...)
	pa := &a.B[:1][0]
	p.Put(a)
	p.Put(b)
	p.Put(c) // over the 3 MiB kept: not in the reserve
	if k := p.Kept(); k != 2<<20 {
		t.Fatalf("kept %d bytes, want 2 MiB", k)
	}
	odd := &Buffer{B: make([]byte, 0, 1<<20+4096)}
	p.Put(odd) // not a class's size: not kept
	if k := p.Kept(); k != 2<<20 {
		t.Fatalf("kept %d bytes after an odd-sized buffer, want 2 MiB", k)
	}
	runtime.GC()
	runtime.GC()
	got := p.GetCap(900 << 10)
	if len(got.B) != 0 || cap(got.B) != 1<<20 {
		t.Fatalf("len %d cap %d", len(got.B), cap(got.B))
	}
	if &got.B[:1][0] != pa && &p.GetCap(1 << 20).B[:1][0] != pa {
		t.Fatal("a kept buffer did not come back after two collections")
	}
}

// Large buffers are cut from the slab first, always go back to it, and
// come from the heap once it is used up.
func TestLargeSlab(t *testing.T) {
	p := NewKeeping(16<<20, 0, 2<<20) // no heap buffers kept
	a, b := p.GetCap(1<<20), p.GetCap(1<<20)
	if !p.large.inSlab(a.B) || !p.large.inSlab(b.B) {
		t.Skip("no slab on this system")
	}
	c := p.GetCap(1 << 20)
	if p.large.inSlab(c.B) {
		t.Fatal("a third 1 MiB buffer from a 2 MiB slab")
	}
	a.B = append(a.B, make([]byte, 1<<20)...) // all of it is writable
	p.Put(a)
	p.Put(b)
	p.Put(c) // a heap buffer, nothing of the heap kept
	if k := p.Kept(); k != 2<<20 {
		t.Fatalf("kept %d, want the slab's 2 MiB", k)
	}
	runtime.GC()
	for i := 0; i < 2; i++ {
		if g := p.GetCap(700 << 10); !p.large.inSlab(g.B) || len(g.B) != 0 || cap(g.B) != 1<<20 {
			t.Fatalf("get %d: slab %v len %d cap %d", i, p.large.inSlab(g.B), len(g.B), cap(g.B))
		}
	}
}

// BenchmarkScratchParallel is a Get and Put of a scratch buffer on every
// CPU at once, as requests do.
func BenchmarkScratchParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			buf := Scratch.Get()
			buf.B = append(buf.B, "GET example.com/path"...)
			Scratch.Put(buf)
		}
	})
}
