package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
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
		sh = &sharedHits{m: map[string]sharedRaw{}}
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

// sharedHits lets the hits of one large entry that are sent at the same
// time share one copy of it. Every Get hands out a new copy (Disk reads
// the file, Memory copies out of bigcache) and a response holds it until
// its client has taken the body, so slow clients of one large object each
// held their own. A Get of an entry of shareMin bytes or more is
// remembered here by a weak pointer: while any response still holds it,
// the next hits of the key use it instead of reading the store again;
// once none does, the GC frees it and the next hit reads the store.
//
// Entries are immutable, and the copy is dropped from here whenever vkp
// writes or deletes the key (when the write is queued and when it is
// done); a Get that raced with such a write is not remembered (epoch).
// What a hit serves is still checked for freshness as any entry is. Only
// for stores vkp alone writes (Memory, Disk).
type sharedHits struct {
	mu    sync.Mutex
	m     map[string]sharedRaw
	n     atomic.Int64  // len(m), read without the lock
	epoch atomic.Uint64 // bumped, under mu, by every drop
}

type sharedRaw struct {
	p weak.Pointer[byte]
	n int
}

const (
	shareMin     = 1 << 20 // entries shared from this size
	shareSweepAt = 1024    // map size from which collected copies are swept
)

// get returns the live shared copy of key's entry, or nil.
func (sh *sharedHits) get(key []byte) []byte {
	if sh == nil || sh.n.Load() == 0 {
		return nil
	}
	sh.mu.Lock()
	r, ok := sh.m[string(key)]
	sh.mu.Unlock()
	if !ok {
		return nil
	}
	p := r.p.Value()
	if p == nil {
		return nil
	}
	return unsafe.Slice(p, r.n)
}

// now returns the epoch to pass to add after a Get.
func (sh *sharedHits) now() uint64 {
	if sh == nil {
		return 0
	}
	return sh.epoch.Load()
}

// add remembers raw, just read for key, unless it is small or key was
// written or deleted since epoch.
func (sh *sharedHits) add(key, raw []byte, epoch uint64) {
	if sh == nil || len(raw) < shareMin {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.epoch.Load() != epoch {
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
	sh.mu.Unlock()
}
