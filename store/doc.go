// Package store holds vkp's response-cache stores behind one small
// interface, Store: Get, Set with a time to live per entry, Delete, Close.
// The engine encodes each cache entry (status, headers, body) itself; to a
// store an entry is an opaque value under an opaque key.
//
// # Files
//
//	store.go      the interface, the errors, MaxKeyLen, interface guards
//	memory.go     Memory: in the process, on bigcache
//	disk.go       Disk: one file per key under a directory
//	diskindex.go  Disk's index: budget, LRU, sweeper, rebuild on start
//	diskfile.go   Disk's file format
//	redis.go      Redis: a Redis server shared by vkp instances, on rueidis
//
// # Contract
//
//   - Every store is safe for concurrent use.
//   - Keys and values passed in are borrowed: valid only during the call.
//     Every store copies what it keeps before returning (Memory into a
//     pooled buffer, then bigcache's shard; Disk into a file; Redis into a
//     string, because rueidis may write a command after its caller timed
//     out). A caller may reuse its buffers as soon as the call returns.
//   - The slice Get returns belongs to the caller, who may change or keep
//     it: Memory returns bigcache's copy, Disk the buffer it read the file
//     into, Redis the buffer rueidis read the reply into (used by nothing
//     else), Redis.GetSmall a copy of its shared cached reply.
//   - Get returns ErrNotFound when nothing live is stored, including after
//     the ttl passed, and for a damaged Disk file. Any other error means the
//     store could not answer: the engine counts it as a miss and never
//     fails a client for it.
//   - Set requires ttl > 0. A key longer than MaxKeyLen (32 KiB) or a value
//     over the store's limit returns ErrTooLarge, and then the key holds
//     nothing: a refused newer value still replaces the older one, so a
//     response that became too large to cache is not served stale.
//   - Delete of a key that holds nothing is not an error.
//   - After Close every call returns ErrClosed; Close may be called again.
//   - Memory never blocks and ignores ctx. Disk checks ctx before it
//     starts and then does its (uninterruptible) file I/O. Redis bounds
//     each call by ctx and by its Timeout, whichever ends first.
//
// # Memory
//
// bigcache has one life window for all entries and its own FIFO eviction
// per shard. Each value is stored behind an 8-byte expiry (unix nanoseconds)
// and Get deletes what has expired; bigcache's life window is set to a day
// and its cleaner runs every minute, so an entry nobody reads again gives
// its space back within a day at most, and a ttl over a day is cut to one.
// A Set racing the delete of an expired value may be lost: one more miss.
// Delete removes by 64-bit hash, so it may also remove a colliding key's
// value, never serve a wrong one (Get compares the whole key).
//
// Sizing (NewMemory): MaxBytes (--memory-cache-max, default 256 MiB) is
// split into a power-of-two number of shards small enough that a value of
// MaxEntry (default 64 MiB; the engine passes its largest
// CacheMaximumBodySize plus header room) fits in half a shard, because
// bigcache v3.1.0 may refuse an entry larger than that depending on how far
// the shard's queue has grown (TestBigcacheHalfShard). So MaxBytes must be
// at least about 2*MaxEntry, else NewMemory fails saying how much is
// needed. Real use: up to 1.5*MaxBytes, since each shard also keeps a copy
// buffer as large as the largest entry it took. bigcache allocates about
// 4 MiB up front and grows shards by doubling.
//
// A hit allocates twice, both inside bigcache (TestMemoryAlloc): it copies
// the stored key to compare it, and the entry to return it. A miss and a
// Set allocate nothing.
//
// # Disk
//
// Files are Dir/ab/<hex SHA-256 of the key> (Dir is made 0o700, files
// 0o600), in the format diskfile.go describes: magic, version, expiry, key
// and value lengths, a CRC-32C over header, key and value, then the key and
// the value. Set writes a temp file in the final directory and renames it
// into place, so a reader sees the old file or the new one, never a part;
// files are not fsynced, since a file torn by a power loss fails its size or
// CRC check and is then treated as absent and removed, like any damaged
// file. A file holding another key (a hash collision) is a miss and stays.
//
// An index in memory (hash to size, expiry, recency) enforces MaxBytes
// (--disk-cache-max, default 1 GiB; file sizes, headers and keys included):
// a Set that goes over evicts least recently used files first, and a value
// whose file alone exceeds MaxBytes is ErrTooLarge. Temp files being written
// are not counted. NewDisk rebuilds the index by reading each file's header
// and key, so the cache survives a restart; it removes temp files a crash
// left, and expired and damaged files, orders entries by modification time
// (reads before a restart are forgotten) and evicts down to MaxBytes. A
// goroutine removes expired files every SweepEvery (default 1 minute); Close
// stops it. I/O errors are returned (wrapped), so the engine counts a miss.
//
// Get asks the file system, not the index, so several processes may share
// a Dir (the old and the new vkp during an upgrade) and see each other's
// entries; each enforces its budget over what it wrote or read.
//
// # Redis
//
// Keys are Prefix+key (default "vkp:"), so instances sharing a server with
// the same Prefix share entries; values are written with SET PX, so the ttl
// is Redis's and the same for every instance. One server is supported
// (rueidis's single client), not Redis Cluster.
//
// vkp starts when Redis is unreachable: rueidis's NewClient fails without a
// server, so a goroutine makes the client in the background, retrying with
// jittered backoff from 100 ms to 2 s until it succeeds or Close; until then
// calls return an error wrapping ErrUnavailable at once. Once made, the
// client reconnects by itself, and rueidis retries a read once, 1 ms later,
// not until the deadline. Every call is bounded by Timeout (default 250 ms),
// connecting included. A call that fails on the transport or times out
// makes the next second's calls fail fast with ErrUnavailable, so a Redis
// that hangs costs one Timeout per second, not one per request; an error
// reply from Redis does not. Measured on one host (the Redis tests log
// them): with Redis killed, Get, Set and Delete fail in about 2 ms together,
// then in under a microsecond; with Redis stopped (SIGSTOP) the first Get
// fails at the timeout; calls work again about a second after Redis is
// back. A connection that stops answering is closed after max(2 s,
// 4*Timeout) instead of rueidis's 10 s.
//
// Values over MaxEntry (default 64 MiB, at most Redis's 512 MiB
// proto-max-bulk-len, beyond which Redis drops the connection) are refused
// with ErrTooLarge. Timeout must cover sending the largest value.
//
// Redis.GetSmall (SmallGetter) reads through rueidis's client-side cache
// (RESP3 client tracking in OPTIN mode, which Redis 6 and later support;
// tested against the distribution's redis-server 7.0): Redis tells every
// instance that read a key this way when it changes, and rueidis drops its
// copy. A value may so be stale for the time an invalidation takes to
// arrive: a GetSmall right after another instance's Set can still see the
// old value (TestRedisGetSmall sees the new one within its 20 ms polling,
// often under a millisecond), and for at most 2 s if an invalidation were
// lost; rueidis drops a connection's copies when the connection breaks. Misses are cached too. Only GetSmall fills the cache (2 MiB per
// connection). Against a server without RESP3, GetSmall is Get.
package store
