package pool

import "testing"

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
