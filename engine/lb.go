package engine

import (
	"math/rand/v2"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Picker chooses one destination for a request among dests (never empty:
// the cluster's available destinations). Implementations keep their state
// in atomics (no locks on the pick path) and allocate nothing. They see the
// request, not a server context: mirror copies are picked with the same
// policies.
type Picker interface {
	Pick(req *fasthttp.Request, dests []*Destination) *Destination
}

var (
	_ Picker = (*RandomPicker)(nil)
	_ Picker = (*RoundRobinPicker)(nil)
	_ Picker = (*LeastRequestsPicker)(nil)
	_ Picker = (*P2CPicker)(nil)
	_ Picker = (*HashPicker)(nil)
)

// IntN returns a uniform random int in [0, n). Tests inject a deterministic one.
type IntN func(n int) int

func defaultIntN(n int) int { return rand.IntN(n) }

// RandomPicker picks uniformly.
type RandomPicker struct{ Rand IntN }

func (p *RandomPicker) Pick(_ *fasthttp.Request, d []*Destination) *Destination {
	return d[p.Rand(len(d))]
}

// RoundRobinPicker cycles through destinations; one counter per cluster.
type RoundRobinPicker struct{ next atomic.Uint64 }

func (p *RoundRobinPicker) Pick(_ *fasthttp.Request, d []*Destination) *Destination {
	return d[(p.next.Add(1)-1)%uint64(len(d))]
}

// LeastRequestsPicker picks the destination with the fewest requests in
// flight; the first one wins ties (as VKProxy does).
type LeastRequestsPicker struct{}

func (LeastRequestsPicker) Pick(_ *fasthttp.Request, d []*Destination) *Destination {
	best := d[0]
	bestN := best.Inflight()
	for _, x := range d[1:] {
		if n := x.Inflight(); n < bestN {
			best, bestN = x, n
		}
	}
	return best
}

// P2CPicker draws two distinct destinations and takes the less loaded one
// (the first drawn on a tie).
type P2CPicker struct{ Rand IntN }

func (p *P2CPicker) Pick(_ *fasthttp.Request, d []*Destination) *Destination {
	if len(d) == 1 {
		return d[0]
	}
	i := p.Rand(len(d))
	j := p.Rand(len(d) - 1)
	if j >= i {
		j++
	}
	a, b := d[i], d[j]
	if b.Inflight() < a.Inflight() {
		return b
	}
	return a
}

// HashBy says where a HashPicker finds its key.
type HashBy uint8

const (
	HashByHeader HashBy = iota
	HashByCookie
	HashByQuery
)

// HashPicker maps a request key (header, cookie or query value) to a
// destination with a case-insensitive FNV-1a hash, so the same client lands
// on the same destination while the destination list is unchanged. A request
// without the key is picked at random (VKProxy hashes "" for a missing header,
// sending all such requests to one destination; vkp spreads them).
type HashPicker struct {
	By   HashBy
	Key  string
	Rand IntN
}

func (p *HashPicker) Pick(req *fasthttp.Request, d []*Destination) *Destination {
	var v []byte
	switch p.By {
	case HashByHeader:
		v = req.Header.Peek(p.Key)
	case HashByCookie:
		v = req.Header.Cookie(p.Key)
	case HashByQuery:
		v = req.URI().QueryArgs().Peek(p.Key)
	}
	if len(v) == 0 {
		return d[p.Rand(len(d))]
	}
	return d[hashFold(v)%uint64(len(d))]
}

// hashFold is FNV-1a over the ASCII-lower-cased bytes.
func hashFold(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// newPicker builds the picker a cluster config asks for.
func newPicker(c *ClusterConfig, rnd IntN) Picker {
	if rnd == nil {
		rnd = defaultIntN
	}
	switch c.LoadBalancingPolicy {
	case "RoundRobin":
		return &RoundRobinPicker{}
	case "LeastRequests":
		return LeastRequestsPicker{}
	case "PowerOfTwoChoices":
		return &P2CPicker{Rand: rnd}
	case "Hash":
		by, _ := c.Metadata.Get("HashBy")
		key, _ := c.Metadata.Get("Key")
		hp := &HashPicker{Key: strings.TrimSpace(key), Rand: rnd}
		switch strings.ToLower(by) {
		case "cookie":
			hp.By = HashByCookie
		case "query":
			hp.By = HashByQuery
		}
		return hp
	}
	return &RandomPicker{Rand: rnd}
}
