package pool

import (
	"syscall"
	"unsafe"
)

// mapSlab reserves n bytes of anonymous memory outside the Go heap,
// aligned to 2 MiB and marked for transparent huge pages: a page fault
// then brings in 2 MiB at once instead of 4 KiB. It returns nil when the
// system refuses; nothing is resident until it is written.
func mapSlab(n int) []byte {
	const huge = 2 << 20
	mem, err := syscall.Mmap(-1, 0, n+huge, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil
	}
	off := 0
	if r := uintptr(unsafe.Pointer(unsafe.SliceData(mem))) % huge; r != 0 {
		off = int(huge - r)
	}
	mem = mem[off : off+n : off+n]
	syscall.Madvise(mem, syscall.MADV_HUGEPAGE) //nolint:errcheck // without it, 4 KiB pages: slower faults, same memory
	return mem
}
