package store

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Redis defaults.
const (
	// DefaultRedisAddr is the Redis vkp uses when none is named.
	DefaultRedisAddr = "127.0.0.1:6379"
	// DefaultRedisPrefix starts every key vkp writes.
	DefaultRedisPrefix = "vkp:"
	// DefaultRedisTimeout bounds each call.
	DefaultRedisTimeout = 250 * time.Millisecond
	// DefaultRedisMaxEntry is the largest value Set sends.
	DefaultRedisMaxEntry = 64 << 20

	// redisMaxBulk is Redis's default proto-max-bulk-len: a longer string
	// is a protocol error that closes the connection under every call on it.
	redisMaxBulk = 512 << 20
	// redisDownFor is how long calls fail fast after one found Redis down
	// or slow, so that a dead Redis costs one Timeout per second instead
	// of one per request.
	redisDownFor = time.Second
	// The background connector's pace while Redis cannot be reached at all.
	redisBackoffMin  = 100 * time.Millisecond
	redisBackoffMax  = 2 * time.Second
	redisDialTimeout = 2 * time.Second
	// redisSmallTTL bounds how long GetSmall may serve a value from the
	// client-side cache.
	redisSmallTTL = 2 * time.Second
	// redisClientCache is rueidis's client-side cache per connection, only
	// filled by GetSmall (rueidis's default is 128 MiB).
	redisClientCache = 2 << 20
)

// RedisOptions configures NewRedis. Zero fields take their defaults.
type RedisOptions struct {
	// Addr is host:port, or a redis://, rediss:// (TLS) or unix:// URL
	// whose user, password and database (redis://u:p@host:6379/2) are used.
	// Default DefaultRedisAddr ("127.0.0.1:6379").
	Addr string
	// Prefix starts every key, so that vkp can share a Redis. Default
	// DefaultRedisPrefix ("vkp:").
	Prefix string
	// Timeout bounds each call, connecting included; it must also cover
	// sending the largest value. Default DefaultRedisTimeout (250 ms).
	Timeout time.Duration
	// MaxEntry is the largest value Set sends; larger ones return
	// ErrTooLarge. At most 512 MiB, Redis's own limit. Default
	// DefaultRedisMaxEntry (64 MiB).
	MaxEntry int64
}

// Redis is a Store in a Redis server, shared by every vkp that names it:
// SET with PX, GET and DEL on Prefix+key, through rueidis (RESP3,
// auto-pipelined). It talks to one server, not a cluster.
//
// vkp starts when Redis cannot be reached: a goroutine connects in the
// background, with backoff, and until it has, calls return an error
// wrapping ErrUnavailable at once. Once connected, rueidis reconnects by
// itself. A call that finds Redis down or slow makes the calls of the next
// second fail fast with ErrUnavailable; then they try again.
type Redis struct {
	prefix   string
	timeout  time.Duration
	maxEntry int

	client    atomic.Pointer[redisClient]
	downUntil atomic.Int64          // unix nanoseconds; calls fail fast before it
	lastErr   atomic.Pointer[error] // why Redis is unavailable, wraps ErrUnavailable
	closed    atomic.Bool

	closing context.Context
	cancel  context.CancelFunc
	done    chan struct{} // the connector has ended
}

type redisClient struct{ c rueidis.Client }

// NewRedis returns a Redis store and starts connecting. It waits at most
// Timeout for the first attempt, so a reachable Redis is ready when it
// returns and an unreachable one does not delay vkp's start. It fails only
// on options that can never work (a malformed URL).
func NewRedis(o RedisOptions) (*Redis, error) {
	if o.Addr == "" {
		o.Addr = DefaultRedisAddr
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.MaxEntry == 0 {
		o.MaxEntry = DefaultRedisMaxEntry
	}
	if o.Timeout < 0 || o.MaxEntry < 0 || o.MaxEntry > redisMaxBulk {
		return nil, fmt.Errorf("store: redis: Timeout %v must be positive and MaxEntry %d within 0..512 MiB", o.Timeout, o.MaxEntry)
	}
	var opt rueidis.ClientOption
	if strings.Contains(o.Addr, "://") {
		var err error
		if opt, err = rueidis.ParseURL(o.Addr); err != nil {
			return nil, fmt.Errorf("store: redis: %w", err)
		}
	} else {
		if _, _, err := net.SplitHostPort(o.Addr); err != nil {
			return nil, fmt.Errorf("store: redis: Addr %q: %w", o.Addr, err)
		}
		opt.InitAddress = []string{o.Addr}
	}
	r := &Redis{
		prefix:   o.Prefix,
		timeout:  o.Timeout,
		maxEntry: int(o.MaxEntry),
		done:     make(chan struct{}),
	}
	r.closing, r.cancel = context.WithCancel(context.Background())
	unavailable := fmt.Errorf("%w: redis: not connected yet", ErrUnavailable)
	r.lastErr.Store(&unavailable)

	opt.ForceSingleClient = true
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = redisDialTimeout
	}
	if opt.ConnWriteTimeout == 0 {
		// A connection whose Redis stopped answering is closed after
		// this, instead of rueidis's 10 s.
		opt.ConnWriteTimeout = max(2*time.Second, 4*o.Timeout)
	}
	opt.CacheSizeEachConn = redisClientCache
	// One quick retry for a connection that broke under a read (an idle
	// connection closed by a proxy); rueidis's default retries until the
	// deadline, which would make every call against a down Redis last
	// Timeout.
	opt.RetryDelay = func(attempts int, _ rueidis.Completed, _ error) time.Duration {
		if attempts > 1 {
			return -1
		}
		return time.Millisecond
	}
	dial := opt.DialCtxFn
	opt.DialCtxFn = func(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		// Close ends a dial in progress, so it never waits a dial timeout.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(r.closing, cancel)
		defer stop()
		if dial != nil {
			return dial(ctx, addr, d, cfg)
		}
		if cfg != nil {
			return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
		}
		return d.DialContext(ctx, "tcp", addr)
	}

	first := make(chan struct{})
	go r.connect(opt, first)
	t := time.NewTimer(o.Timeout)
	defer t.Stop()
	select {
	case <-first:
	case <-t.C:
	}
	return r, nil
}

// connect makes the rueidis client, retrying with jittered exponential
// backoff until it succeeds or Close. first is closed after the first try.
func (r *Redis) connect(opt rueidis.ClientOption, first chan struct{}) {
	defer close(r.done)
	signal := func() {
		if first != nil {
			close(first)
			first = nil
		}
	}
	defer signal()
	backoff := redisBackoffMin
	for {
		c, err := rueidis.NewClient(opt)
		if err == nil {
			// Close waits for this goroutine before closing what is
			// stored, so a client made while closing is closed too.
			r.client.Store(&redisClient{c})
			return
		}
		if errors.Is(err, rueidis.ErrNoCache) && !opt.DisableCache {
			// A Redis without RESP3 or tracking: GetSmall becomes Get.
			opt.DisableCache = true
			continue
		}
		e := fmt.Errorf("%w: redis: %v", ErrUnavailable, err)
		r.lastErr.Store(&e)
		signal()
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-r.closing.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, redisBackoffMax)
	}
}

// conn returns the client to use, or why there is none to use now.
func (r *Redis) conn() (rueidis.Client, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	c := r.client.Load()
	if c == nil || r.downUntil.Load() > time.Now().UnixNano() {
		return nil, *r.lastErr.Load()
	}
	return c.c, nil
}

// fail turns an error from rueidis into the store's. A transport failure or
// our own timeout (not the caller's cancellation) opens the fail-fast
// window; an error reply from Redis does not.
func (r *Redis) fail(ctx context.Context, err error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return fmt.Errorf("store: redis: %w", err)
	}
	if ctx.Err() == nil {
		e := fmt.Errorf("%w: redis: %v", ErrUnavailable, err)
		r.lastErr.Store(&e)
		r.downUntil.Store(time.Now().Add(redisDownFor).UnixNano())
	}
	return fmt.Errorf("store: redis: %w", err)
}

func (r *Redis) key(key []byte) string { return r.prefix + string(key) }

// Get returns the value under Prefix+key. The bytes are the ones rueidis
// read the reply into, used by nothing else, so the caller owns them.
func (r *Redis) Get(ctx context.Context, key []byte) ([]byte, error) {
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	v, err := c.Do(cctx, c.B().Get().Key(r.key(key)).Build()).AsBytes()
	cancel()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return nil, ErrNotFound
		}
		return nil, r.fail(ctx, err)
	}
	return v, nil
}

// GetSmall is Get through rueidis's client-side cache, for small values
// read often (the engine's variant index). Redis tracks the keys it serves
// this way and tells the client when another client, or this one, changes
// them, and rueidis drops the cached copy then, and all of a connection's
// copies when the connection breaks. A copy is kept at most 2 s (less when
// the key expires sooner), which bounds the staleness if an invalidation
// were lost; normally it is the time the invalidation takes to arrive,
// under a millisecond on one host. Misses are cached the same way.
func (r *Redis) GetSmall(ctx context.Context, key []byte) ([]byte, error) {
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	v, err := c.DoCache(cctx, c.B().Get().Key(r.key(key)).Cache(), redisSmallTTL).AsBytes()
	cancel()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return nil, ErrNotFound
		}
		return nil, r.fail(ctx, err)
	}
	// The cached reply is shared by every caller: hand out a copy.
	return bytes.Clone(v), nil
}

// Set sends SET Prefix+key val PX ttl (rounded up to a millisecond). val is
// copied first: with auto-pipelining a command whose caller timed out may
// still be written later, after the caller reused its buffer.
func (r *Redis) Set(ctx context.Context, key, val []byte, ttl time.Duration) error {
	if r.closed.Load() {
		return ErrClosed
	}
	err := checkSet(key, ttl)
	if err == nil && len(val) > r.maxEntry {
		err = ErrTooLarge
	}
	if err != nil {
		if err == ErrTooLarge {
			_ = r.Delete(ctx, key)
		}
		return err
	}
	c, err := r.conn()
	if err != nil {
		return err
	}
	px := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	err = c.Do(cctx, c.B().Set().Key(r.key(key)).Value(string(val)).PxMilliseconds(px).Build()).Error()
	cancel()
	if err != nil {
		return r.fail(ctx, err)
	}
	return nil
}

// Delete sends DEL Prefix+key.
func (r *Redis) Delete(ctx context.Context, key []byte) error {
	c, err := r.conn()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	err = c.Do(cctx, c.B().Del().Key(r.key(key)).Build()).Error()
	cancel()
	if err != nil {
		return r.fail(ctx, err)
	}
	return nil
}

// Close stops the connector (ending a dial in progress) and closes the
// client, which fails the calls in flight with ErrClosed.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.cancel()
	<-r.done
	if c := r.client.Load(); c != nil {
		c.c.Close()
	}
	return nil
}
