package engine

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// rawIO returns what syscall.Read and syscall.Write return: the bytes
// moved, EAGAIN on an empty non-blocking socket (n -1), EBADF on a closed
// descriptor, and 0 at the end of the stream.
func TestRawIO(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := uintptr(fds[0]), uintptr(fds[1])
	defer syscall.Close(fds[0])
	buf := make([]byte, 16)
	if n, err := rawIO(syscall.SYS_READ, a, buf); n != -1 || err != syscall.EAGAIN {
		t.Fatalf("empty read: %d %v, want -1 EAGAIN", n, err)
	}
	if n, err := rawIO(syscall.SYS_WRITE, b, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	if n, err := rawIO(syscall.SYS_READ, a, buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %d %v %q", n, err, buf[:max(n, 0)])
	}
	if n, err := rawIO(syscall.SYS_WRITE, b, nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d %v", n, err)
	}
	syscall.Close(fds[1])
	if n, err := rawIO(syscall.SYS_READ, a, buf); n != 0 || err != nil {
		t.Fatalf("read at the end: %d %v, want 0 nil", n, err)
	}
	if n, err := rawIO(syscall.SYS_WRITE, b, []byte("x")); n != -1 || err != syscall.EBADF {
		t.Fatalf("write to a closed fd: %d %v, want -1 EBADF", n, err)
	}
}

// With raw system calls on (one CPU of its own), answers kept for the next
// read and requests sent by the read of their answer behave as with the
// ordinary calls: the tests of both, again with rawSock set.
func TestRawSockSendThenRead(t *testing.T) {
	was := rawSock.Load()
	rawSock.Store(true)
	t.Cleanup(func() { rawSock.Store(was) })
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"upstream partial write", TestSendThenReadPartialWrite},
		{"upstream edges", TestSendThenReadEdges},
		{"client pipelined during handler", TestClientConnPipelinedDuringHandler},
		{"client idle gaps and timeout", TestClientConnIdleGapsAndTimeout},
		{"client slow reader", TestClientConnSlowReader},
		{"client close not kept", TestClientConnCloseNotKept},
		{"client answer after read deadline", TestClientConnAnswerSentWhenReadDeadlinePassed},
	} {
		t.Run(tc.name, tc.f)
	}
}

// Raw calls are on only with one CPU and one P: a child of this test
// binary under taskset reports its decision.
func TestRawSockOneCPU(t *testing.T) {
	if want := os.Getenv("VKP_RAWSOCK_WANT"); want != "" {
		if got := strconv.FormatBool(rawSock.Load()); got != want {
			t.Fatalf("rawSock %s, want %s (GOMAXPROCS %d)", got, want, runtime.GOMAXPROCS(0))
		}
		return
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset")
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := 0; cpu < 0 && i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpu = i
		}
	}
	cases := []struct {
		pin         bool
		procs, want string
	}{
		{true, "1", "true"},
		{true, "2", "false"},
	}
	if set.Count() > 1 {
		cases = append(cases, struct {
			pin         bool
			procs, want string
		}{false, "1", "false"})
	}
	for _, tc := range cases {
		argv := []string{os.Args[0], "-test.run", "^TestRawSockOneCPU$"}
		if tc.pin {
			argv = append([]string{"taskset", "--cpu-list", strconv.Itoa(cpu)}, argv...)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+tc.procs, "VKP_RAWSOCK_WANT="+tc.want)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("pinned %v, GOMAXPROCS=%s: %v\n%s", tc.pin, tc.procs, err, out)
		}
	}
}
