package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The floor peer (--peers floor) is the least a server can do for a cache
// hit on this machine: one epoll loop per worker that reads a request and
// writes one constant answer (status line, the headers of a hit, the
// origin's pattern as body) built once at start. No routing, no lookup, no
// clock, no timers, no HTTP beyond finding the end of a header (and
// refusing a method other than GET or HEAD, or a body). It is not
// a proxy: it shows how much of a proxy's cost per hit is the two socket
// calls and the loopback TCP under them, which every contender pays, and
// so how far apart proxies can be at all on a given machine.

// floorMaxHead bounds a request header; a longer one ends the connection.
const floorMaxHead = 64 << 10

// floorListen opens one listening socket per worker on addr (IPv4), with
// SO_REUSEPORT so the kernel spreads connections among them. Port 0 picks
// a free port for the first and reuses it for the rest. It returns the
// sockets and the address they listen on.
func floorListen(addr string, workers int) ([]int, string, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, "", fmt.Errorf("bench floor: %q: an IPv4 address is needed", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, "", fmt.Errorf("bench floor: port %q: %v", portStr, err)
	}
	var fds []int
	fail := func(err error) ([]int, string, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, "", fmt.Errorf("bench floor: listen %s: %w", addr, err)
	}
	for range max(workers, 1) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		fds = append(fds, fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fail(err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail(err)
		}
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip)
		if err := unix.Bind(fd, sa); err != nil {
			return fail(err)
		}
		if port == 0 {
			got, err := unix.Getsockname(fd)
			if err != nil {
				return fail(err)
			}
			port = got.(*unix.SockaddrInet4).Port
		}
		if err := unix.Listen(fd, 4096); err != nil {
			return fail(err)
		}
	}
	return fds, net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// floorAnswer returns the floor's answers to GET and to HEAD: a cache hit
// as vkp sends one (the origin's headers, Age, Cache-Status), with size
// bytes of the origin's pattern.
func floorAnswer(size int, cacheControl string) (get, head []byte) {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\nServer: bench-origin\r\nContent-Type: application/octet-stream\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n", size)
	if cacheControl != "" {
		fmt.Fprintf(&b, "Cache-Control: %s\r\n", cacheControl)
	}
	fmt.Fprintf(&b, "Date: %s\r\nAge: 0\r\nCache-Status: floor; hit; ttl=59\r\n\r\n", time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	head = bytes.Clone(b.Bytes())
	b.Write(sharedPattern(size))
	return b.Bytes(), head
}

// runFloor serves the floor on addr with workers loops until ctx ends.
func runFloor(ctx context.Context, addr string, size, workers int, cacheControl string) error {
	fds, got, err := floorListen(addr, workers)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", got)
	return serveFloor(ctx, fds, size, cacheControl)
}

// serveFloor runs one loop per listening socket until ctx ends, then
// closes them and every connection.
func serveFloor(ctx context.Context, lns []int, size int, cacheControl string) error {
	get, head := floorAnswer(size, cacheControl)
	errs := make([]error, len(lns))
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = floorLoop(ctx, ln, get, head)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// floorConn is one client connection of a loop.
type floorConn struct {
	in      []byte // requests read and not yet answered
	out     []byte // an answer the socket has not all taken yet
	waitOut bool   // the loop waits for writability, not readability
}

// floorLoop is one worker: level-triggered epoll over its listener and
// its connections. A connection with answers the socket has not taken
// waits for writability only, so a client that sends and never reads
// holds one unsent answer and the requests it sent.
func floorLoop(ctx context.Context, ln int, get, head []byte) error {
	defer unix.Close(ln)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bench floor: epoll: %w", err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln)}); err != nil {
		return fmt.Errorf("bench floor: epoll: %w", err)
	}
	var conns []*floorConn // by descriptor
	defer func() {
		for fd, c := range conns {
			if c != nil {
				unix.Close(fd)
			}
		}
	}()
	closeConn := func(fd int) {
		unix.Close(fd) // also leaves the epoll set
		conns[fd] = nil
	}
	want := func(fd int, ev uint32) {
		unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: ev, Fd: int32(fd)}) //nolint:errcheck // a dead conn fails its next call
	}
	buf := make([]byte, 64<<10)
	evs := make([]unix.EpollEvent, 256)
	for ctx.Err() == nil {
		// Events already waiting are taken without telling the scheduler
		// (the call does not block); only an idle loop blocks in the kernel.
		n, err := epollNow(ep, evs)
		if err == nil && n == 0 {
			n, err = unix.EpollWait(ep, evs, 200)
		}
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("bench floor: epoll_wait: %w", err)
		}
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == ln {
				for {
					c, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break // EAGAIN, or a connection that went away
					}
					unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) //nolint:errcheck // as Go sets it
					for c >= len(conns) {
						conns = append(conns, nil)
					}
					conns[c] = &floorConn{}
					if unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c)}) != nil {
						closeConn(c)
					}
				}
				continue
			}
			c := conns[fd]
			if c == nil {
				continue
			}
			if len(c.out) > 0 {
				// Writable again: send the rest, then answer what came
				// meanwhile.
				if !c.flush(fd) {
					closeConn(fd)
					continue
				}
				if len(c.out) > 0 {
					continue
				}
			} else {
				m, err := rawIO(unix.SYS_READ, fd, buf)
				if err == syscall.EAGAIN || err == syscall.EINTR {
					continue
				}
				if m <= 0 || err != nil {
					closeConn(fd)
					continue
				}
				c.in = append(c.in, buf[:m]...)
			}
			// Left in c.in: an unfinished header, bounded here, or (when
			// the socket is full) requests waiting their turn, at most what
			// one read brought.
			if !c.answer(fd, get, head) || len(c.out) == 0 && len(c.in) > floorMaxHead {
				closeConn(fd)
				continue
			}
			if len(c.out) > 0 {
				want(fd, unix.EPOLLOUT)
			} else if c.waitOut {
				want(fd, unix.EPOLLIN)
			}
			c.waitOut = len(c.out) > 0
		}
	}
	return nil
}

// answer answers each whole request header in c.in, in order, until the
// socket stops taking answers; what is left waits in c.in. Only GET and
// HEAD without a body are answered: anything else ends the connection
// (false), as does a failed write.
func (c *floorConn) answer(fd int, get, head []byte) bool {
	in := c.in
	defer func() { c.in = append(c.in[:0], in...) }()
	for len(c.out) == 0 {
		i := bytes.Index(in, []byte("\r\n\r\n"))
		if i < 0 {
			return true
		}
		req := in[:i+2]
		in = in[i+4:]
		var ans []byte
		switch {
		case floorHasBody(req):
			return false
		case bytes.HasPrefix(req, []byte("GET ")):
			ans = get
		case bytes.HasPrefix(req, []byte("HEAD ")):
			ans = head
		default:
			return false
		}
		for len(ans) > 0 {
			n, err := rawIO(unix.SYS_WRITE, fd, ans)
			if err == syscall.EAGAIN {
				c.out = append([]byte(nil), ans...) // a slow reader: rare
				break
			}
			if err != nil || n <= 0 {
				return false
			}
			ans = ans[n:]
		}
	}
	return true
}

// flush writes what c.out holds until the socket stops taking it; false
// when the connection failed.
func (c *floorConn) flush(fd int) bool {
	for len(c.out) > 0 {
		n, err := rawIO(unix.SYS_WRITE, fd, c.out)
		if err == syscall.EAGAIN {
			return true
		}
		if err != nil || n <= 0 {
			return false
		}
		c.out = c.out[n:]
	}
	c.out = nil
	return true
}

// floorHasBody reports whether a request header announces a body.
func floorHasBody(req []byte) bool {
	for len(req) > 0 {
		line := req
		if i := bytes.Index(req, []byte("\r\n")); i >= 0 {
			line, req = req[:i], req[i+2:]
		} else {
			req = nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // the request line
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return true
		case bytes.EqualFold(name, []byte("Content-Length")) && string(bytes.TrimSpace(value)) != "0":
			return true
		}
	}
	return false
}

// rawIO is read(2) or write(2) on a non-blocking socket without telling
// the scheduler (the call never waits), as vkp does on one CPU.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// epollNow is epoll_wait with a zero timeout, made the same way.
func epollNow(ep int, evs []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
