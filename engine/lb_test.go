package engine

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

func testDests(n int) []*Destination {
	d := make([]*Destination, n)
	for i := range d {
		hs := &hostState{gen: new(atomic.Uint64)}
		d[i] = &Destination{Address: fmt.Sprintf("d%d", i), up: &upstream{}, hs: hs, inflight: &hs.inflight}
	}
	return d
}

// seq returns a deterministic IntN cycling through vals.
func seq(vals ...int) IntN {
	i := 0
	return func(n int) int { v := vals[i%len(vals)] % n; i++; return v }
}

func counts(p Picker, d []*Destination, n int, hdr ...string) map[string]int {
	m := map[string]int{}
	for i := 0; i < n; i++ {
		m[p.Pick(&reqCtx("GET", "h", "/?k=v", hdr...).Request, d).Address]++
	}
	return m
}

func TestRoundRobinCycles(t *testing.T) {
	d := testDests(3)
	p := &RoundRobinPicker{}
	var got []string
	for i := 0; i < 6; i++ {
		got = append(got, p.Pick(nil, d).Address)
	}
	if fmt.Sprint(got) != "[d0 d1 d2 d0 d1 d2]" {
		t.Fatalf("round robin order %v", got)
	}
}

func TestRandomIsUniform(t *testing.T) {
	d := testDests(4)
	c := counts(&RandomPicker{Rand: defaultIntN}, d, 40000)
	for _, x := range d {
		if n := c[x.Address]; math.Abs(float64(n)-10000) > 600 {
			t.Fatalf("random picked %s %d times of 40000 (want ~10000): %v", x.Address, n, c)
		}
	}
}

func TestLeastRequests(t *testing.T) {
	d := testDests(3)
	d[0].hs.inflight.Store(5)
	d[1].hs.inflight.Store(2)
	d[2].hs.inflight.Store(2)
	if got := (LeastRequestsPicker{}).Pick(nil, d); got != d[1] {
		t.Fatalf("picked %s, want d1 (fewest in flight, first on tie)", got.Address)
	}
	d[2].hs.inflight.Store(0)
	if got := (LeastRequestsPicker{}).Pick(nil, d); got != d[2] {
		t.Fatalf("picked %s, want d2", got.Address)
	}
}

func TestP2C(t *testing.T) {
	d := testDests(3)
	d[0].hs.inflight.Store(9)
	// Draws 0 then 0 → second index is shifted past the first: {d0, d1}.
	if got := (&P2CPicker{Rand: seq(0, 0)}).Pick(nil, d); got != d[1] {
		t.Fatalf("picked %s, want the less loaded d1 of {d0, d1}", got.Address)
	}
	// Two distinct choices always: with 2 destinations both are compared.
	two := testDests(2)
	two[1].hs.inflight.Store(1)
	for i := 0; i < 50; i++ {
		if got := (&P2CPicker{Rand: defaultIntN}).Pick(nil, two); got != two[0] {
			t.Fatalf("picked the busier destination")
		}
	}
	// Spread: with equal load every destination gets traffic.
	c := counts(&P2CPicker{Rand: defaultIntN}, testDests(3), 3000)
	if len(c) != 3 {
		t.Fatalf("p2c never picked some destination: %v", c)
	}
}

func TestHashSticky(t *testing.T) {
	d := testDests(5)
	tests := []struct {
		name string
		p    *HashPicker
		hdr  []string
	}{
		{"header", &HashPicker{By: HashByHeader, Key: "X-Forwarded-For"}, []string{"X-Forwarded-For", "10.1.2.3"}},
		{"cookie", &HashPicker{By: HashByCookie, Key: "sid"}, []string{"Cookie", "sid=abc; x=y"}},
		{"query", &HashPicker{By: HashByQuery, Key: "k"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Rand = func(int) int { t.Fatal("random fallback used although the key is present"); return 0 }
			c := counts(tt.p, d, 50, tt.hdr...)
			if len(c) != 1 {
				t.Fatalf("same key went to %d destinations: %v", len(c), c)
			}
		})
	}
	// Different keys spread over destinations.
	p := &HashPicker{By: HashByHeader, Key: "X-User", Rand: defaultIntN}
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		seen[p.Pick(&reqCtx("GET", "h", "/", "X-User", fmt.Sprint("user", i)).Request, d).Address] = true
	}
	if len(seen) != 5 {
		t.Fatalf("200 keys reached only %d of 5 destinations", len(seen))
	}
	// Case-insensitive hashing: the same key in another case lands on the same destination.
	a := p.Pick(&reqCtx("GET", "h", "/", "X-User", "Alice").Request, d)
	b := p.Pick(&reqCtx("GET", "h", "/", "X-User", "ALICE").Request, d)
	if a != b {
		t.Fatalf("Alice → %s, ALICE → %s", a.Address, b.Address)
	}
}

func TestHashMissingKeyFallsBackToRandom(t *testing.T) {
	d := testDests(4)
	for _, p := range []*HashPicker{
		{By: HashByHeader, Key: "X-Missing"}, {By: HashByCookie, Key: "none"}, {By: HashByQuery, Key: "none"},
	} {
		used := 0
		p.Rand = func(n int) int { used++; return defaultIntN(n) }
		c := counts(p, d, 400)
		if used != 400 || len(c) != 4 {
			t.Fatalf("missing key: random used %d/400, spread %v", used, c)
		}
	}
}

func TestClusterPickEdgeCases(t *testing.T) {
	var gen atomic.Uint64
	if (&Cluster{gen: &gen}).Pick(nil) != nil {
		t.Fatal("empty cluster picked something")
	}
	d := testDests(2)
	c := &Cluster{dests: d, gen: &gen, picker: &HashPicker{Rand: func(int) int { t.Fatal("policy ran for one destination"); return 0 }}}
	d[1].hs.active.Store(activeDown)
	gen.Add(1)
	if c.Pick(&reqCtx("GET", "h", "/").Request) != d[0] {
		t.Fatal("the one available destination not returned")
	}
	d[0].hs.passiveDown.Store(true)
	gen.Add(1)
	if c.Pick(&reqCtx("GET", "h", "/").Request) != nil {
		t.Fatal("a destination picked while none is available")
	}
}

func TestNewPickerFromConfig(t *testing.T) {
	for policy, want := range map[string]string{
		"Random": "*engine.RandomPicker", "RoundRobin": "*engine.RoundRobinPicker", "LeastRequests": "engine.LeastRequestsPicker",
		"PowerOfTwoChoices": "*engine.P2CPicker", "Hash": "*engine.HashPicker",
	} {
		p := newPicker(&ClusterConfig{LoadBalancingPolicy: policy, Metadata: Metadata{"hashby": "cookie", "key": "sid"}}, nil)
		if got := fmt.Sprintf("%T", p); got != want {
			t.Errorf("%s → %s, want %s", policy, got, want)
		}
		if hp, ok := p.(*HashPicker); ok && (hp.By != HashByCookie || hp.Key != "sid") {
			t.Errorf("hash picker %+v", hp)
		}
	}
}
