package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A pinned run (`run --pin`) gives the proxy under test CPUs of its own:
// the first half of the CPUs this process may use (at least one) for the
// proxy, the rest for this process (the load generator, wrk) and the
// origins, which inherit its set. It is how a proxy is measured when the
// clients and the services behind it are other machines: the load
// generator's CPU is not taken from the proxy, and the ratio between two
// proxies is the ratio of what each does with the same CPUs.

// cpuSplit splits the CPUs this process may run on into the proxy's and
// the rest. It fails with fewer than two.
func cpuSplit() (proxy, rest []int, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, nil, fmt.Errorf("bench: --pin: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return nil, nil, fmt.Errorf("bench: --pin needs two CPUs or more, this process may use %d", len(cpus))
	}
	half := len(cpus) / 2
	return cpus[:half], cpus[half:], nil
}

// pinSelf moves every thread of this process to cpus (threads started
// later inherit it from the one starting them) and sizes the Go scheduler
// to them.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("bench: --pin: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that ended since the listing is no error.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("bench: --pin: thread %d: %w", tid, err)
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// pinArgv returns argv started on cpus: util-linux's taskset sets its own
// CPUs and executes argv, so the proxy's first thread, and every thread or
// worker process it starts, runs there (setting a child's CPUs after it
// started would miss the threads it started first).
func pinArgv(cpus []int, argv []string) []string {
	if len(cpus) == 0 {
		return argv
	}
	return append([]string{"taskset", "--cpu-list", cpuList(cpus)}, argv...)
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
