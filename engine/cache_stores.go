package engine

import (
	"fmt"
	"sync"

	"github.com/vkp-proxy/vkp/store"
)

// cacheStores opens the cache's stores the first time a route names one
// and keeps them for the engine's life: reloads share them, so a reload
// keeps what is cached.
type cacheStores struct {
	mu      sync.Mutex
	openers map[string]func() (store.Store, error)
	opened  map[string]store.Store
}

func newCacheStores(openers map[string]func() (store.Store, error)) *cacheStores {
	return &cacheStores{openers: openers, opened: map[string]store.Store{}}
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
