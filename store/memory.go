package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/vkp-proxy/vkp/pool"
)

// Memory defaults and bigcache's fixed costs (bigcache v3.1.0 encoding.go
// and queue/bytes_queue.go).
const (
	// DefaultMemoryMaxBytes is --memory-cache-max when it is not set.
	DefaultMemoryMaxBytes = 256 << 20
	// DefaultMemoryMaxEntry is the largest value Memory must hold when the
	// engine does not say.
	DefaultMemoryMaxEntry = 64 << 20

	// memoryLifeWindow is bigcache's one life window for every entry. Each
	// value carries its own expiry, so this only bounds how long an entry
	// nobody reads again can keep its space: bigcache's cleaner, every
	// memoryCleanWindow, drops entries older than this. A value set with a
	// longer ttl is dropped early, which costs one more fetch a day.
	memoryLifeWindow  = 24 * time.Hour
	memoryCleanWindow = time.Minute

	expiryLen     = 8                       // our prefix: expiry in unix nanoseconds
	bigcacheHdr   = 8 + 8 + 2               // bigcache's timestamp, hash, key length
	queueHdrMax   = 5                       // bigcache's queue: uvarint length of an entry
	memoryMaxWrap = bigcacheHdr + MaxKeyLen // an entry's bytes around our blob
	maxShards     = 1024                    // bigcache's default; more only adds maps
	initialBytes  = 4 << 20                 // bigcache's up-front allocation, all shards
	minShardInit  = 4 << 10                 // ... and at least this per shard
	mib           = 1 << 20                 // bigcache's HardMaxCacheSize unit
)

// MemoryOptions configures NewMemory. Zero fields take their defaults.
type MemoryOptions struct {
	// MaxBytes bounds the cache's data (--memory-cache-max). It is rounded
	// down to whole MiB, bigcache's unit, and must be at least twice
	// MaxEntry (see NewMemory). Default DefaultMemoryMaxBytes (256 MiB).
	MaxBytes int64
	// MaxEntry is the largest value that must fit: the engine passes its
	// largest CacheMaximumBodySize plus header room. Set refuses anything
	// larger with ErrTooLarge. Default DefaultMemoryMaxEntry (64 MiB).
	MaxEntry int64
}

// Memory is a Store in the process's memory, on bigcache: values live in a
// few large byte slices the garbage collector does not scan.
//
// bigcache has one life window for all entries, so each stored blob is an
// 8-byte expiry (unix nanoseconds, little endian) followed by the value; Get
// treats an expired blob as absent and deletes it. bigcache evicts per shard
// in insertion order (FIFO) when a shard is full.
type Memory struct {
	c        *bigcache.BigCache
	maxEntry int
	shards   int
	closed   atomic.Bool
	now      func() time.Time
}

// NewMemory returns an empty Memory store.
//
// bigcache refuses an entry that does not fit in one shard (MaxBytes /
// shards), and, depending on how far the shard's queue has grown, one
// larger than half a shard: its queue may only grow while the grown size
// stays under the shard's limit (queue.Push). NewMemory therefore picks the
// largest power-of-two shard count, at most 1024, for which a MaxEntry value
// under the longest key takes at most half a shard, and fails when even one
// shard cannot hold it (MaxBytes under about 2*MaxEntry). The defaults give
// one shard; the engine's usual MaxEntry of about 1 MiB gives 64 shards in
// 256 MiB. More shards mean less contention on Set, which locks its shard
// while copying.
//
// Memory use: the shards' data is bounded by MaxBytes; on top, each shard
// keeps a copy buffer as large as the largest entry written to it
// (bigcache's entryBuffer, at most half a shard), so the worst case is
// about 1.5*MaxBytes plus the index maps. Up front bigcache allocates about
// 4 MiB; shards grow by doubling as they fill.
func NewMemory(o MemoryOptions) (*Memory, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMemoryMaxBytes
	}
	if o.MaxEntry == 0 {
		o.MaxEntry = DefaultMemoryMaxEntry
	}
	if o.MaxBytes < mib {
		return nil, fmt.Errorf("store: memory: MaxBytes %d is under 1 MiB, bigcache's unit", o.MaxBytes)
	}
	if o.MaxEntry < 0 {
		return nil, fmt.Errorf("store: memory: MaxEntry %d is negative", o.MaxEntry)
	}
	if o.MaxEntry > o.MaxBytes {
		return nil, fmt.Errorf("store: memory: MaxEntry %d is larger than MaxBytes %d", o.MaxEntry, o.MaxBytes)
	}
	mb := o.MaxBytes / mib
	if mb > int64(^uint(0)>>1)/mib {
		return nil, fmt.Errorf("store: memory: MaxBytes %d is too large", o.MaxBytes)
	}
	shards := memoryShards(int(mb)*mib, int(o.MaxEntry))
	if shards == 0 {
		need := 2*(queueNeed(memoryMaxWrap+expiryLen+int(o.MaxEntry))+1) + mib - 1
		return nil, fmt.Errorf("store: memory: MaxEntry %d does not fit MaxBytes %d: bigcache holds an entry in half a shard, so MaxBytes must be at least %d MiB",
			o.MaxEntry, o.MaxBytes, need/mib)
	}
	perShard := max(initialBytes/shards, minShardInit)
	cfg := bigcache.Config{
		Shards:      shards,
		LifeWindow:  memoryLifeWindow,
		CleanWindow: memoryCleanWindow,
		// The initial queue of a shard is MaxEntriesInWindow/Shards (at
		// least 10) times MaxEntrySize; MaxEntrySize also sizes each shard's
		// first copy buffer. Neither limits what fits.
		MaxEntriesInWindow: 10 * shards,
		MaxEntrySize:       perShard / 10,
		HardMaxCacheSize:   int(mb),
		Verbose:            false,
	}
	// bigcache's cleaner prints when its context ends; Close stops it
	// through its own channel instead, so the context never ends.
	c, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("store: memory: %w", err)
	}
	return &Memory{c: c, maxEntry: int(o.MaxEntry), shards: shards, now: time.Now}, nil
}

// memoryShards returns the shard count for a cache of total bytes whose
// entries must fit values of maxEntry bytes, or 0 when none does.
func memoryShards(total, maxEntry int) int {
	need := queueNeed(memoryMaxWrap + expiryLen + maxEntry)
	for s := maxShards; s >= 1; s /= 2 {
		// bigcache's shard limit is total/shards (config.go
		// maximumShardSizeInBytes). With need <= limit/2-1, Push succeeds
		// on an emptied shard whatever its capacity C: either C-1 >= need,
		// or C <= need and C+need < limit, so the queue grows to fit.
		if 2*(need+1) <= total/s {
			return s
		}
	}
	return 0
}

// queueNeed is the room bigcache's queue takes for an entry of n bytes.
func queueNeed(n int) int { return n + queueHdrMax }

// Get returns a copy of the live value under key. It never blocks on I/O
// and ignores ctx. A hit allocates twice, both inside bigcache: the copy of
// the stored key it compares against (readKeyFromEntry) and the copy of the
// entry it returns (readEntry); the value returned is that copy past our
// expiry prefix. A miss allocates nothing.
func (m *Memory) Get(_ context.Context, key []byte) ([]byte, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	// bigcache hashes and compares the key on Get and keeps no reference
	// to it, so the borrowed bytes can be viewed as a string.
	blob, err := m.c.Get(bstr(key))
	if err != nil {
		if errors.Is(err, bigcache.ErrEntryNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("store: memory: %w", err)
	}
	if len(blob) < expiryLen || int64(binary.LittleEndian.Uint64(blob)) <= m.now().UnixNano() {
		// A Set racing this delete may lose its value: one more miss.
		_ = m.c.Delete(bstr(key))
		return nil, ErrNotFound
	}
	return blob[expiryLen:], nil
}

// Set stores a copy of val under key until ttl has passed. Values larger
// than MaxEntry return ErrTooLarge and remove what key held.
func (m *Memory) Set(_ context.Context, key, val []byte, ttl time.Duration) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := checkSet(key, ttl); err != nil {
		if err == ErrTooLarge {
			_ = m.c.Delete(bstr(key))
		}
		return err
	}
	if len(val) > m.maxEntry {
		_ = m.c.Delete(bstr(key))
		return ErrTooLarge
	}
	b := pool.Bodies.Get()
	b.B = binary.LittleEndian.AppendUint64(b.B, uint64(m.now().Add(ttl).UnixNano()))
	b.B = append(b.B, val...)
	// bigcache copies key and blob into its shard before returning
	// (wrapEntry, then queue.Push), so neither is kept.
	err := m.c.Set(bstr(key), b.B)
	pool.Bodies.Put(b)
	if err != nil {
		// Only reachable if the shard sizing above is wrong for this
		// bigcache version: say so rather than pretend.
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return nil
}

// Delete removes what key holds. bigcache deletes by the key's 64-bit hash,
// so a colliding key's value may go too: one more miss, never a wrong hit
// (Get compares the whole key).
func (m *Memory) Delete(_ context.Context, key []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := m.c.Delete(bstr(key)); err != nil && !errors.Is(err, bigcache.ErrEntryNotFound) {
		return fmt.Errorf("store: memory: %w", err)
	}
	return nil
}

// Close stops bigcache's cleaner. The memory is released when the Memory is
// no longer referenced.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	return m.c.Close()
}

// Shards reports the shard count NewMemory chose.
func (m *Memory) Shards() int { return m.shards }
