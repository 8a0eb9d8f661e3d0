package engine

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"

	"github.com/vkp-proxy/vkp/store"
)

// cacheStores opens the cache's stores the first time a route names one
// and keeps them for the engine's life: reloads share them, so a reload
// keeps what is cached.
type cacheStores struct {
	mu      sync.Mutex
	openers map[string]func() (store.Store, error)
	opened  map[string]store.Store
	shared  map[string]*sharedHits
}

func newCacheStores(openers map[string]func() (store.Store, error)) *cacheStores {
	return &cacheStores{openers: openers, opened: map[string]store.Store{}, shared: map[string]*sharedHits{}}
}

// sharing returns the shared hits of a kind's store: nil for Redis, which
// other vkp instances write too, so only its own reads say what it holds.
func (cs *cacheStores) sharing(kind string) *sharedHits {
	if kind == "redis" {
		return nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	sh := cs.shared[kind]
	if sh == nil {
		sh = newSharedHits()
		cs.shared[kind] = sh
	}
	return sh
}

// open returns the store of a kind, opening it once.
func (cs *cacheStores) open(kind string) (store.Store, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if st := cs.opened[kind]; st != nil {
		return st, nil
	}
	opener := cs.openers[kind]
	if opener == nil {
		switch kind {
		case "memory":
			opener = func() (store.Store, error) { return store.NewMemory(store.MemoryOptions{}) }
		case "redis":
			return nil, fmt.Errorf(`the Redis cache store needs a Redis server: start vkp with --redis ADDR (or a redis:// URL)`)
		default:
			return nil, fmt.Errorf("the %s cache store is not configured", kind)
		}
	}
	st, err := opener()
	if err != nil {
		return nil, fmt.Errorf("opening the %s cache store: %w", kind, err)
	}
	cs.opened[kind] = st
	return st, nil
}

// close closes every store opened.
func (cs *cacheStores) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k, st := range cs.opened {
		st.Close() //nolint:errcheck // shutting down
		delete(cs.opened, k)
	}
}

// sharedHits lets hits share the copies a store hands out. Every Get
// hands out a new copy (Disk reads the file, Memory copies out of
// bigcache), so without it each hit costs a store read and an allocation
// of the entry's size, and slow clients of one large object each hold
// their own copy.
//
//   - An entry smaller than shareMin that was just read is kept (hot) for
//     hotHold: the hits of a popular key in that time use the copy, so
//     the key is read from the store about once per hotHold. The first
//     hit of a copy keeps it decoded, with the header its answer parsed
//     (decodedHit), so the others copy a parsed header. Hot copies
//     and their keys take at most hotBudget bytes in all, apart from the
//     store's own size; when a shard is full, the entry is not kept.
//   - An entry of shareMin bytes or more is remembered by a weak pointer:
//     while any response still holds it, the next hits of the key use it;
//     once none does, the GC frees it and the next hit reads the store.
//
// Entries are immutable, and the copy is dropped from here whenever vkp
// writes or deletes the key (when the write is queued and when it is
// done); a Get that raced with such a write is not remembered (epoch).
// What a hit serves is still checked for freshness as any entry is, so a
// hot copy of an entry the store has since evicted for room is served at
// most hotHold longer. Only for stores vkp alone writes (Memory, Disk).
type sharedHits struct {
	mu    sync.Mutex
	m     map[string]sharedRaw
	n     atomic.Int64  // len(m), read without the lock
	epoch atomic.Uint64 // bumped, under mu, by every drop
	seed  maphash.Seed
	hot   [hotShards]hotShard
}

type sharedRaw struct {
	p weak.Pointer[byte]
	n int
}

// hotShard holds some of the hot copies; its lock is taken under
// sharedHits.mu when copies are added or dropped, alone on a hit.
type hotShard struct {
	mu    sync.Mutex
	m     map[string]*hotRaw // expired ones keep their key, for the next add
	bytes int                // of copies and keys
	_     [40]byte           // keeps shards' locks on separate cache lines
}

type hotRaw struct {
	raw   []byte      // nil once expired
	until int64       // unix ns
	dec   *decodedHit // raw decoded, by its first hit
	decN  int         // what dec is counted for (decodedSize)
	// noDec: the shard had no room for dec; later hits parse raw as a
	// store read's does instead of each building a decoded form that
	// would be refused again
	noDec bool
}

// size is what the copy takes from its shard's budget, key apart.
func (h *hotRaw) size() int { return len(h.raw) + h.decN }

// clear forgets the copy, keeping the key's place.
func (h *hotRaw) clear() { h.raw, h.dec, h.decN, h.noDec = nil, nil, 0, false }

// decodedSize estimates the memory of a decoded copy: the decodedHit
// itself (a variant index's too, which has no header), and the parsed
// header holds the block's bytes again, and a slice header pair per line.
func decodedSize(d *decodedHit) int {
	return int(unsafe.Sizeof(*d)) + len(d.e.head) + 64*bytes.Count(d.e.head, strCRLF)
}

const (
	shareMin     = 1 << 20 // entries shared from this size
	shareSweepAt = 1024    // map size from which collected copies are swept

	hotHold   = int64(time.Second)
	hotShards = 16
	hotBudget = 32 << 20 // bytes of hot copies, over all shards
	hotKeys   = 1024     // keys per shard, expired ones included
)

func newSharedHits() *sharedHits {
	sh := &sharedHits{m: map[string]sharedRaw{}, seed: maphash.MakeSeed()}
	for i := range sh.hot {
		sh.hot[i].m = map[string]*hotRaw{}
	}
	return sh
}

func (sh *sharedHits) shard(key []byte) *hotShard {
	return &sh.hot[maphash.Bytes(sh.seed, key)%hotShards]
}

// get returns the live shared copy of key's entry, or nil; now is the
// request's time (unix ns). For a hot copy, d is the copy decoded, if a
// hit has done that yet (see decoded), and hot is true while that may
// still be done.
func (sh *sharedHits) get(key []byte, now int64) (raw []byte, d *decodedHit, hot bool) {
	if sh == nil {
		return nil, nil, false
	}
	hs := sh.shard(key)
	hs.mu.Lock()
	if h := hs.m[string(key)]; h != nil && h.raw != nil {
		if h.until > now {
			raw, d, hot = h.raw, h.dec, !h.noDec
		} else {
			hs.bytes -= h.size()
			h.clear()
		}
	}
	hs.mu.Unlock()
	if raw != nil {
		return raw, d, hot
	}
	if sh.n.Load() == 0 {
		return nil, nil, false
	}
	sh.mu.Lock()
	r, ok := sh.m[string(key)]
	sh.mu.Unlock()
	if !ok {
		return nil, nil, false
	}
	p := r.p.Value()
	if p == nil {
		return nil, nil, false
	}
	return unsafe.Slice(p, r.n), nil, false
}

// decoded keeps d, decoded from the hot copy raw of key, for the copy's
// next hits, if raw is still key's copy. Decoding on the first hit of a
// copy rather than on the store read keeps that work (a parse, a few
// allocations) off keys that are read once.
func (sh *sharedHits) decoded(key, raw []byte, d *decodedHit) {
	hs := sh.shard(key)
	hs.mu.Lock()
	h := hs.m[string(key)]
	if h != nil && h.dec == nil && len(h.raw) == len(raw) && len(raw) > 0 && &h.raw[0] == &raw[0] {
		if n := decodedSize(d); !hs.full(n, key, false) {
			h.dec, h.decN = d, n
			hs.bytes += n
		} else {
			h.noDec = true
		}
	}
	hs.mu.Unlock()
}

// now returns the epoch to pass to add after a Get.
func (sh *sharedHits) now() uint64 {
	if sh == nil {
		return 0
	}
	return sh.epoch.Load()
}

// add remembers raw, just read for key at now, unless key was written or
// deleted since epoch.
func (sh *sharedHits) add(key, raw []byte, epoch uint64, now int64) {
	if sh == nil {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.epoch.Load() != epoch {
		return
	}
	if len(raw) < shareMin {
		sh.addHot(key, raw, now)
		return
	}
	if len(sh.m) >= shareSweepAt {
		for k, r := range sh.m {
			if r.p.Value() == nil {
				delete(sh.m, k)
			}
		}
		if len(sh.m) >= shareSweepAt {
			return
		}
	}
	sh.m[string(key)] = sharedRaw{p: weak.Make(unsafe.SliceData(raw)), n: len(raw)}
	sh.n.Store(int64(len(sh.m)))
}

// addHot keeps a small copy for hotHold, if its shard has room once the
// expired copies are swept. A key kept before reuses its place, so a hot
// key's reads from the store allocate nothing here. Called under sh.mu.
func (sh *sharedHits) addHot(key, raw []byte, now int64) {
	hs := sh.shard(key)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.m[string(key)]
	if h != nil {
		hs.bytes -= h.size()
		h.clear()
	}
	if hs.full(len(raw), key, h == nil) {
		for k, o := range hs.m {
			if o.raw == nil || o.until <= now {
				hs.bytes -= o.size() + len(k)
				delete(hs.m, k)
			}
		}
		if h != nil && hs.m[string(key)] == nil {
			h = nil // swept: kept again below only if there is room
		}
		if hs.full(len(raw), key, h == nil) {
			return
		}
	}
	if h == nil {
		h = &hotRaw{}
		hs.m[string(key)] = h
		hs.bytes += len(key)
	}
	h.raw, h.until = raw, now+hotHold
	hs.bytes += len(raw)
}

// full reports whether a copy of n bytes (and key, when it is new) would
// take the shard past its share of hotBudget or hotKeys.
func (hs *hotShard) full(n int, key []byte, newKey bool) bool {
	if newKey {
		return hs.bytes+n+len(key) > hotBudget/hotShards || len(hs.m) >= hotKeys
	}
	return hs.bytes+n > hotBudget/hotShards
}

// drop forgets key's copy: vkp writes or deletes the key.
func (sh *sharedHits) drop(key []byte) {
	if sh == nil {
		return
	}
	sh.mu.Lock()
	sh.epoch.Add(1)
	if _, ok := sh.m[string(key)]; ok {
		delete(sh.m, string(key))
		sh.n.Store(int64(len(sh.m)))
	}
	hs := sh.shard(key)
	hs.mu.Lock()
	if h := hs.m[string(key)]; h != nil {
		hs.bytes -= h.size() + len(key)
		delete(hs.m, string(key))
	}
	hs.mu.Unlock()
	sh.mu.Unlock()
}
