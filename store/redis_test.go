package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needRedis skips a test when redis-server is not installed, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not on PATH and CI is set: .ci/run should have installed it (%v)", err)
		}
		t.Skip("redis-server is not on PATH: install it (apt-get install redis-server) to run the Redis store tests")
	}
}

// redisServer is a real redis-server process on a loopback port.
type redisServer struct {
	t    *testing.T
	port int
	args []string
	cmd  *exec.Cmd
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// startRedis starts redis-server on port without persistence, waits until
// it answers PING, and kills it when the test ends.
func startRedis(t *testing.T, port int, args ...string) *redisServer {
	t.Helper()
	needRedis(t)
	s := &redisServer{t: t, port: port, args: args}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) start() {
	s.t.Helper()
	args := append([]string{"--save", "", "--appendonly", "no", "--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if reply, err := redisDo(s.addr(), s.password(), "PING"); err == nil && reply == "PONG" {
			return
		}
		if time.Now().After(deadline) {
			s.kill()
			s.t.Fatalf("redis-server on port %d did not answer PING within 5s", s.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *redisServer) password() string {
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// kill ends the server at once (SIGKILL), as a crash would.
func (s *redisServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *redisServer) signal(sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// do sends one command on a fresh connection and returns the reply.
func (s *redisServer) do(args ...string) string {
	s.t.Helper()
	reply, err := redisDo(s.addr(), s.password(), args...)
	if err != nil {
		s.t.Fatalf("redis %v: %v", args, err)
	}
	return reply
}

// redisDo is a minimal RESP2 client for checking the server directly: it
// returns a simple, integer or bulk reply as text ("(nil)" for a null).
func redisDo(addr, password string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	send := func(args ...string) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch line[0] {
		case '+', ':':
			return line[1:], nil
		case '-':
			return "", errors.New(line[1:])
		case '$':
			n, _ := strconv.Atoi(line[1:])
			if n < 0 {
				return "(nil)", nil
			}
			buf := make([]byte, n+2)
			if _, err := readFull(r, buf); err != nil {
				return "", err
			}
			return string(buf[:n]), nil
		}
		return "", fmt.Errorf("unexpected reply %q", line)
	}
	if password != "" {
		if _, err := send("AUTH", password); err != nil {
			return "", err
		}
	}
	return send(args...)
}

func readFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
	srv := startRedis(t, freePort(t))
	const timeout = 250 * time.Millisecond
	r := newRedis(t, RedisOptions{Addr: srv.addr(), Timeout: timeout})
	if err := setGet(r, "k", "before"); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	checkDown(t, r, timeout)
	srv.start()
	took := eventually(t, 5*time.Second, "Set and Get after Redis restarted", func() error { return setGet(r, "k", "after") })
	t.Logf("working again %v after redis-server answered PING", took)
}

func TestRedisStopped(t *testing.T) {
	// A Redis that accepts but does not answer (SIGSTOP): calls end at the
	// timeout, then fail fast for a second instead of each waiting.
	srv := startRedis(t, freePort(t))
	const timeout = 200 * time.Millisecond
	r := newRedis(t, RedisOptions{Addr: srv.addr(), Timeout: timeout})
	if err := setGet(r, "k", "v"); err != nil {
		t.Fatal(err)
	}
	srv.signal(syscall.SIGSTOP)
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
	srv.signal(syscall.SIGCONT)
	took = eventually(t, 5*time.Second, "Get after SIGCONT", func() error { return setGet(r, "k", "again") })
	t.Logf("working again %v after SIGCONT", took)
}

func TestRedisStartsWhileDown(t *testing.T) {
	port := freePort(t)
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
	srv := startRedis(t, port)
	took := eventually(t, 5*time.Second, "Set and Get once Redis is up", func() error { return setGet(r, "k", "v") })
	t.Logf("working %v after redis-server answered PING", took)
	if got := srv.do("GET", "vkp:k"); got != "v" {
		t.Fatalf("redis GET vkp:k = %q", got)
	}
}

func TestRedisSharedByTwoInstances(t *testing.T) {
	srv := startRedis(t, freePort(t))
	ctx := context.Background()
	a := newRedis(t, RedisOptions{Addr: srv.addr()})
	b := newRedis(t, RedisOptions{Addr: srv.addr()})
	other := newRedis(t, RedisOptions{Addr: srv.addr(), Prefix: "other:"})
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
	if ms, _ := strconv.Atoi(srv.do("PTTL", "vkp:ttl")); ms < 89000 || ms > 90000 {
		t.Fatalf("PTTL = %d ms, want about 90000", ms)
	}
}

func TestRedisGetSmall(t *testing.T) {
	srv := startRedis(t, freePort(t))
	ctx := context.Background()
	a := newRedis(t, RedisOptions{Addr: srv.addr()})
	b := newRedis(t, RedisOptions{Addr: srv.addr()})
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
func getCalls(t *testing.T, srv *redisServer) int {
	t.Helper()
	for _, line := range strings.Split(srv.do("INFO", "commandstats"), "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func TestRedisURL(t *testing.T) {
	srv := startRedis(t, freePort(t), "--requirepass", "s3cret")
	tests := []struct {
		name string
		addr string
		ok   bool
	}{
		{"password and database", "redis://:s3cret@" + srv.addr() + "/2", true},
		{"user default", "redis://default:s3cret@" + srv.addr() + "/0", true},
		{"wrong password", "redis://:wrong@" + srv.addr(), false},
		{"no password", srv.addr(), false},
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
	if ks := srv.do("INFO", "keyspace"); !strings.Contains(ks, "db2:keys=1") || !strings.Contains(ks, "db0:keys=1") {
		t.Fatalf("the URLs' databases were not used: %q", ks)
	}
	if _, err := NewRedis(RedisOptions{Addr: "http://x"}); err == nil {
		t.Fatal("NewRedis accepted an http URL")
	}
	if _, err := NewRedis(RedisOptions{Addr: "no-port"}); err == nil {
		t.Fatal("NewRedis accepted an address without a port")
	}
}
