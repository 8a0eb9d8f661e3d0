package engine

import (
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerOpen reports whether an idle connection can still carry a request:
// nothing to read yet (EAGAIN). End of stream, an error or unsolicited bytes
// (a late response, a 408 sent before closing) mean it cannot. The peek
// goes through Control, not Read: Read fails, without calling back, once
// the socket's last read deadline has passed. Its callback is made once
// per connection: built per call, it would escape to the heap on every
// request.
func (c *uconn) peerOpen() bool {
	if c.rc == nil {
		return true
	}
	c.peek()
	return c.peekErr == syscall.EAGAIN || c.peekErr == syscall.EINTR
}

// dataWaiting reports whether bytes from the upstream are waiting in the
// socket (more of a response that is arriving).
func (c *uconn) dataWaiting() bool {
	if c.rc == nil {
		return false
	}
	c.peek()
	return c.peekN > 0
}

func (c *uconn) peek() {
	if c.peekFn == nil {
		c.peekFn = func(fd uintptr) {
			c.peekN, _, c.peekErr = syscall.Recvfrom(int(fd), c.peekB[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		}
	}
	c.peekN, c.peekErr = 0, nil
	if err := c.rc.Control(c.peekFn); err != nil {
		c.peekErr = err
	}
}

// connGone reports whether a client has closed or reset its connection (a
// peek sees the end of stream or an error). A client that sent more (a
// pipelined request) is still there. As nginx does, a client that
// half-closed after its request counts as gone. Rare (once a second per
// request waiting on a slow upstream), so it may allocate.
func connGone(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var b [1]byte
	err = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
	})
	return gone || err != nil
}

// sendThenReadOK: a request held whole is sent by the read of its answer
// (uconn.sendThenRead), through sockRead and sockWrite.
const sendThenReadOK = true

// With one CPU of its own (GOMAXPROCS=1 and a one-CPU affinity: taskset,
// a cpuset, an exclusive CPU in Kubernetes), vkp makes the socket reads and
// writes of its answers and upstream requests as raw system calls: the
// runtime does not learn that the thread is in the kernel, so it never
// hands the thread's P to another thread during a slow loopback write.
// With one CPU that hand-off only queued a second thread behind the first
// on the same CPU: measured (BENCHMARKS.md), cache hits on one CPU had a
// p99 0.60x, 0.99x and 0.69x of the ordinary calls' in three runs, at the
// same rate. With more CPUs, or CPUs shared with other processes, the
// hand-off is what lets the other Ps run while a thread waits in the
// kernel (raw calls there raised get-small's p99 by a quarter), so the
// ordinary calls stay. Decided once, at start.
// The sockets are non-blocking: these calls never wait.
var rawSock atomic.Bool

func init() { rawSock.Store(oneCPU()) }

// oneCPU reports whether the process may run on one CPU only, with one P.
func oneCPU() bool {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return false
	}
	return set.Count() == 1 && runtime.GOMAXPROCS(0) == 1
}

func sockRead(fd uintptr, p []byte) (int, error) {
	if rawSock.Load() {
		return rawIO(syscall.SYS_READ, fd, p)
	}
	return syscall.Read(int(fd), p)
}

func sockWrite(fd uintptr, p []byte) (int, error) {
	if rawSock.Load() {
		return rawIO(syscall.SYS_WRITE, fd, p)
	}
	return syscall.Write(int(fd), p)
}

// rawIO is read(2) or write(2) on fd without telling the scheduler; it
// returns as syscall.Read and syscall.Write do.
func rawIO(trap, fd uintptr, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.RawSyscall(trap, fd, uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
