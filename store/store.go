package store

import (
	"context"
	"errors"
	"time"
	"unsafe"
)

// Store keeps opaque values under keys, each with its own time to live.
// Implementations are safe for concurrent use. Keys and values passed in
// are borrowed: the store copies what it keeps before returning.
type Store interface {
	// Get returns the value stored under key, or ErrNotFound (also when it expired).
	// The returned slice belongs to the caller. Any other error means the store
	// could not answer (the engine treats it as a miss and never fails the client).
	Get(ctx context.Context, key []byte) ([]byte, error)
	// Set stores val under key for ttl (>0). A value the store cannot hold (too big for it)
	// returns ErrTooLarge and is not stored.
	Set(ctx context.Context, key, val []byte, ttl time.Duration) error
	// Delete removes the value stored under key. Deleting a key that holds
	// nothing is not an error.
	Delete(ctx context.Context, key []byte) error
	// Close releases the store's resources and stops its background work.
	// Calls after Close return ErrClosed; Close itself may be called again.
	Close() error
}

// SmallGetter is implemented by stores with a faster read for small values
// that are read far more often than written (the engine's variant index),
// at the price of the bounded staleness the implementation documents.
// Otherwise it is Get.
type SmallGetter interface {
	GetSmall(ctx context.Context, key []byte) ([]byte, error)
}

var (
	// ErrNotFound is returned by Get when no live value is stored under a key.
	ErrNotFound = errors.New("store: not found")
	// ErrTooLarge is returned by Set for a value (or a key longer than
	// MaxKeyLen) the store cannot hold. After it, the key holds nothing:
	// the newer value replaces the older one even when it is refused.
	ErrTooLarge = errors.New("store: value too large")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable is wrapped by the errors of a store whose backend
	// cannot be reached (Redis down): the call failed fast, without trying.
	ErrUnavailable = errors.New("store: unavailable")

	errTTL = errors.New("store: ttl must be positive")
)

// MaxKeyLen is the longest key every store accepts; Set refuses a longer
// one with ErrTooLarge. bigcache keeps a key's length in 16 bits and, in
// v3.1.0, adds its 18-byte header to it in 16 bits too (encoding.go
// readKeyFromEntry), so a key over 65517 bytes makes its Get panic; 32 KiB
// leaves room. The other stores refuse the same keys so that a deployment
// can move between stores without new failures.
const MaxKeyLen = 32 << 10

// Interface guards.
var (
	_ Store = (*Memory)(nil)
	_ Store = (*Disk)(nil)
	_ Store = (*Redis)(nil)

	_ SmallGetter = (*Redis)(nil)
)

// checkSet validates what every Set receives.
func checkSet(key []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errTTL
	}
	if len(key) > MaxKeyLen {
		return ErrTooLarge
	}
	return nil
}

// bstr views b as a string without copying. The string must not outlive
// the call it is passed to, nor be kept by the callee, since b is borrowed.
func bstr(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
