package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vkp-proxy/vkp/internal/redistest"
)

func newRedis(t *testing.T, o RedisOptions) *Redis {
	t.Helper()
	r, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// eventually retries f every 20ms until it returns nil or within passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: still failing after %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setGet sets key to val and reads it back.
func setGet(s Store, key, val string) error {
	ctx := context.Background()
	if err := s.Set(ctx, []byte(key), []byte(val), time.Minute); err != nil {
		return err
	}
	got, err := s.Get(ctx, []byte(key))
	if err != nil {
		return err
	}
	if string(got) != val {
		return fmt.Errorf("Get = %q, want %q", got, val)
	}
	return nil
}

// checkDown checks that every call fails, not with ErrNotFound, within the
// timeout plus a margin for a loaded machine.
func checkDown(t *testing.T, r *Redis, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		start := time.Now()
		_, gerr := r.Get(ctx, []byte("k"))
		serr := r.Set(ctx, []byte("k"), []byte("v"), time.Minute)
		derr := r.Delete(ctx, []byte("k"))
		took := time.Since(start)
		if gerr == nil || errors.Is(gerr, ErrNotFound) || serr == nil || derr == nil {
			t.Fatalf("with Redis down: Get = %v, Set = %v, Delete = %v; want errors other than ErrNotFound", gerr, serr, derr)
		}
		if took > 3*timeout+300*time.Millisecond {
			t.Fatalf("three calls with Redis down took %v, timeout %v each", took, timeout)
		}
		if i == 0 {
			t.Logf("first calls after Redis went down: %v for Get+Set+Delete (Get: %v)", took, gerr)
		} else if i == 4 {
			t.Logf("later calls: %v for Get+Set+Delete (Get: %v)", took, gerr)
		}
	}
}

func TestRedisKilledAndRestarted(t *testing.T) {
	srv := redistest.Start(t, redistest.FreePort(t))
	const timeout = 250 * time.Millisecond
	r := newRedis(t, RedisOptions{Addr: srv.Addr(), Timeout: timeout})
	if err := setGet(r, "k", "before"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	checkDown(t, r, timeout)
	srv.Start()
	took := eventually(t, 5*time.Second, "Set and Get after Redis restarted", func() error { return setGet(r, "k", "after") })
	t.Logf("working again %v after redis-server answered PING", took)
}

func TestRedisStopped(t *testing.T) {
	// A Redis that accepts but does not answer (SIGSTOP): calls end at the
	// timeout, then fail fast for a second instead of each waiting.
	srv := redistest.Start(t, redistest.FreePort(t))
	const timeout = 200 * time.Millisecond
	r := newRedis(t, RedisOptions{Addr: srv.Addr(), Timeout: timeout})
	if err := setGet(r, "k", "v"); err != nil {
		t.Fatal(err)
	}
	srv.Signal(syscall.SIGSTOP)
	start := time.Now()
	_, err := r.Get(context.Background(), []byte("k"))
	took := time.Since(start)
	if err == nil || errors.Is(err, ErrNotFound) || took > timeout+150*time.Millisecond {
		t.Fatalf("Get on a stopped Redis = %v after %v, want an error within %v", err, took, timeout)
	}
	t.Logf("Get on a stopped Redis: %v after %v", err, took)
	start = time.Now()
	_, err = r.Get(context.Background(), []byte("k"))
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > 20*time.Millisecond {
		t.Fatalf("next Get = %v after %v, want ErrUnavailable at once", err, took)
	} else {
		t.Logf("next Get: %v after %v", err, took)
	}
	srv.Signal(syscall.SIGCONT)
	took = eventually(t, 5*time.Second, "Get after SIGCONT", func() error { return setGet(r, "k", "again") })
	t.Logf("working again %v after SIGCONT", took)
}

func TestRedisStartsWhileDown(t *testing.T) {
	port := redistest.FreePort(t)
	const timeout = 250 * time.Millisecond
	start := time.Now()
	r := newRedis(t, RedisOptions{Addr: "127.0.0.1:" + strconv.Itoa(port), Timeout: timeout})
	if took := time.Since(start); took > timeout+100*time.Millisecond {
		t.Fatalf("NewRedis with Redis down took %v", took)
	}
	start = time.Now()
	if _, err := r.Get(context.Background(), []byte("k")); !errors.Is(err, ErrUnavailable) || time.Since(start) > 20*time.Millisecond {
		t.Fatalf("Get before Redis is up = %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	time.Sleep(300 * time.Millisecond) // let the connector back off a few times
	srv := redistest.Start(t, port)
	took := eventually(t, 5*time.Second, "Set and Get once Redis is up", func() error { return setGet(r, "k", "v") })
	t.Logf("working %v after redis-server answered PING", took)
	if got := srv.Do("GET", "vkp:k"); got != "v" {
		t.Fatalf("redis GET vkp:k = %q", got)
	}
}

func TestRedisSharedByTwoInstances(t *testing.T) {
	srv := redistest.Start(t, redistest.FreePort(t))
	ctx := context.Background()
	a := newRedis(t, RedisOptions{Addr: srv.Addr()})
	b := newRedis(t, RedisOptions{Addr: srv.Addr()})
	other := newRedis(t, RedisOptions{Addr: srv.Addr(), Prefix: "other:"})
	mustSet(t, a, []byte("page"), []byte("from a"), time.Minute)
	if got := mustGet(t, b, []byte("page")); string(got) != "from a" {
		t.Fatalf("b sees %q", got)
	}
	if _, err := other.Get(ctx, []byte("page")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another prefix sees the key: %v", err)
	}
	if err := b.Delete(ctx, []byte("page")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, []byte("page")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a after b deleted = %v", err)
	}
	// The ttl is Redis's: PX, visible to every instance.
	mustSet(t, a, []byte("ttl"), []byte("v"), 90*time.Second)
	if ms, _ := strconv.Atoi(srv.Do("PTTL", "vkp:ttl")); ms < 89000 || ms > 90000 {
		t.Fatalf("PTTL = %d ms, want about 90000", ms)
	}
}

func TestRedisGetSmall(t *testing.T) {
	srv := redistest.Start(t, redistest.FreePort(t))
	ctx := context.Background()
	a := newRedis(t, RedisOptions{Addr: srv.Addr()})
	b := newRedis(t, RedisOptions{Addr: srv.Addr()})
	key := []byte("variants")
	if _, err := a.GetSmall(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSmall of a missing key = %v", err)
	}
	// A cached miss is invalidated when another instance sets the key.
	mustSet(t, b, key, []byte("Accept-Encoding"), time.Minute)
	small := func(want string) func() error {
		return func() error {
			got, err := a.GetSmall(ctx, key)
			if err != nil {
				return err
			}
			if string(got) != want {
				return fmt.Errorf("GetSmall = %q, want %q", got, want)
			}
			return nil
		}
	}
	t.Logf("miss invalidated in %v", eventually(t, time.Second, "GetSmall after b set", small("Accept-Encoding")))
	// Repeated reads come from the client-side cache, not Redis.
	before := getCalls(t, srv)
	for i := 0; i < 20; i++ {
		got, err := a.GetSmall(ctx, key)
		if err != nil || string(got) != "Accept-Encoding" {
			t.Fatalf("GetSmall = %q, %v", got, err)
		}
		got[0] = 'X' // the caller's copy, not the cache's
	}
	if calls := getCalls(t, srv) - before; calls > 1 {
		t.Fatalf("20 GetSmall calls made %d GETs on Redis, want at most 1 (client-side cache)", calls)
	}
	mustSet(t, b, key, []byte("Accept-Encoding, Accept-Language"), time.Minute)
	t.Logf("value invalidated in %v", eventually(t, time.Second, "GetSmall after b changed it", small("Accept-Encoding, Accept-Language")))
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "GetSmall after b deleted", func() error {
		if _, err := a.GetSmall(ctx, key); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("GetSmall = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// getCalls reads how many GET commands Redis has run.
func getCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	for _, line := range strings.Split(srv.Do("INFO", "commandstats"), "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func TestRedisURL(t *testing.T) {
	srv := redistest.Start(t, redistest.FreePort(t), "--requirepass", "s3cret")
	tests := []struct {
		name string
		addr string
		ok   bool
	}{
		{"password and database", "redis://:s3cret@" + srv.Addr() + "/2", true},
		{"user default", "redis://default:s3cret@" + srv.Addr() + "/0", true},
		{"wrong password", "redis://:wrong@" + srv.Addr(), false},
		{"no password", srv.Addr(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedis(t, RedisOptions{Addr: tc.addr, Prefix: "url:"})
			err := setGet(r, "k", tc.name)
			if tc.ok != (err == nil) {
				t.Fatalf("setGet = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("error = %v, want ErrUnavailable", err)
			}
		})
	}
	if ks := srv.Do("INFO", "keyspace"); !strings.Contains(ks, "db2:keys=1") || !strings.Contains(ks, "db0:keys=1") {
		t.Fatalf("the URLs' databases were not used: %q", ks)
	}
	if _, err := NewRedis(RedisOptions{Addr: "http://x"}); err == nil {
		t.Fatal("NewRedis accepted an http URL")
	}
	if _, err := NewRedis(RedisOptions{Addr: "no-port"}); err == nil {
		t.Fatal("NewRedis accepted an address without a port")
	}
}
