// Package redistest runs real redis-server processes for tests: the Redis
// cache store's and the end-to-end tests of the built binary. A test that
// needs one is skipped when redis-server is not installed, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
package redistest

import (
	"bufio"
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

// Need skips a test when redis-server is not installed, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
func Need(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not on PATH and CI is set: .ci/run should have installed it (%v)", err)
		}
		t.Skip("redis-server is not on PATH: install it (apt-get install redis-server) to run the Redis store tests")
	}
}

// Server is a real redis-server process on a loopback port.
type Server struct {
	t    testing.TB
	Port int
	args []string
	cmd  *exec.Cmd
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts redis-server on port without persistence, waits until
// it answers PING, and kills it when the test ends.
func Start(t testing.TB, port int, args ...string) *Server {
	t.Helper()
	Need(t)
	s := &Server{t: t, Port: port, args: args}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start starts the server (again, after Kill) on its port.
func (s *Server) Start() {
	s.t.Helper()
	args := append([]string{"--save", "", "--appendonly", "no", "--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if reply, err := Do(s.Addr(), s.password(), "PING"); err == nil && reply == "PONG" {
			return
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.t.Fatalf("redis-server on port %d did not answer PING within 5s", s.Port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) password() string {
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Signal sends sig to the server (SIGSTOP freezes it).
func (s *Server) Signal(sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// Do sends one command on a fresh connection and returns the reply.
func (s *Server) Do(args ...string) string {
	s.t.Helper()
	reply, err := Do(s.Addr(), s.password(), args...)
	if err != nil {
		s.t.Fatalf("redis %v: %v", args, err)
	}
	return reply
}

// Do is a minimal RESP2 client for checking the server directly: it
// returns a simple, integer or bulk reply as text ("(nil)" for a null).
func Do(addr, password string, args ...string) (string, error) {
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

// FreePort returns a loopback port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
