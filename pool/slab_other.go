//go:build !linux

package pool

// mapSlab has no huge pages to offer here: large buffers come from the heap.
func mapSlab(int) []byte { return nil }
