package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Disk defaults.
const (
	// DefaultDiskMaxBytes is --disk-cache-max when it is not set.
	DefaultDiskMaxBytes = 1 << 30
	// DefaultDiskSweepEvery is how often expired files are removed.
	DefaultDiskSweepEvery = time.Minute

	tmpPrefix = ".tmp-"
)

// DiskOptions configures NewDisk. Zero fields take their defaults.
type DiskOptions struct {
	// Dir holds the cache; it is created (0o700) when missing. Required.
	Dir string
	// MaxBytes bounds the files' total size, headers and keys included
	// (--disk-cache-max). Default DefaultDiskMaxBytes (1 GiB).
	MaxBytes int64
	// SweepEvery is the period of the goroutine that removes expired
	// files. Default DefaultDiskSweepEvery (1 minute).
	SweepEvery time.Duration
}

// Disk is a Store of one file per key under a directory. See the package
// documentation for the file format, the index and what survives a restart.
type Disk struct {
	dir    string
	max    int64
	now    func() time.Time
	closed atomic.Bool

	// mu guards the index, and every rename and removal of a final file,
	// so that the index describes what is at each path.
	mu    sync.Mutex
	index map[[sha256.Size]byte]*diskEntry
	lru   diskEntry // sentinel: lru.next is the most recently used
	used  int64

	stop chan struct{}
	done chan struct{}
}

// diskEntry is what the index knows of one file.
type diskEntry struct {
	sum        [sha256.Size]byte
	size       int64
	expires    int64
	prev, next *diskEntry
}

// NewDisk opens the cache in o.Dir: it removes temp files left by a crash,
// reads every file's header to rebuild the index (expired, torn and corrupt
// files are removed; other names are left alone), evicts down to MaxBytes,
// and starts the sweeper. Reading the headers costs one open and one small
// read per file.
func NewDisk(o DiskOptions) (*Disk, error) {
	if o.Dir == "" {
		return nil, errors.New("store: disk: Dir is required")
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultDiskMaxBytes
	}
	if o.SweepEvery == 0 {
		o.SweepEvery = DefaultDiskSweepEvery
	}
	if o.MaxBytes < 0 || o.SweepEvery < 0 {
		return nil, fmt.Errorf("store: disk: MaxBytes %d and SweepEvery %v must not be negative", o.MaxBytes, o.SweepEvery)
	}
	// 0o700: cached responses may carry what only vkp's user should read.
	// The 256 fan-out directories are made by the first Set into each.
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: disk: %w", err)
	}
	d := &Disk{
		dir:   o.Dir,
		max:   o.MaxBytes,
		now:   time.Now,
		index: make(map[[sha256.Size]byte]*diskEntry),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	d.lru.prev, d.lru.next = &d.lru, &d.lru
	if err := d.load(); err != nil {
		return nil, err
	}
	go d.sweeper(o.SweepEvery)
	return d, nil
}

// path returns the final file name for a key's hash: Dir/ab/abcd...
func (d *Disk) path(sum *[sha256.Size]byte) string {
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return filepath.Join(d.dir, string(h[:2]), string(h[:]))
}

// Get reads the file for key whole, in one allocation, and returns the
// value, a subslice of it owned by the caller. The file system, not the
// index, says what exists, so files another process wrote in Dir are found
// too. A file for another key (a hash collision) is a miss and stays; an
// expired, torn or corrupt one is a miss and is removed.
func (d *Disk) Get(ctx context.Context, key []byte) ([]byte, error) {
	if d.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	p := d.path(&sum)
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.forget(&sum)
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("store: disk: %w", err)
	}
	b, fi, err := readFile(f, d.max)
	f.Close()
	if err != nil && err != errCorrupt {
		return nil, fmt.Errorf("store: disk: %w", err)
	}
	var h diskHeader
	var k, v []byte
	if err == nil {
		h, k, v, err = decodeFile(b)
	}
	switch {
	case err != nil:
		d.removeIf(&sum, p, fi)
		return nil, ErrNotFound
	case !bytes.Equal(k, key):
		return nil, ErrNotFound
	case h.expires <= d.now().UnixNano():
		d.removeIf(&sum, p, fi)
		return nil, ErrNotFound
	}
	d.touch(&sum, h, p, fi)
	return v, nil
}

// readFile reads an open file whole. A file larger than limit cannot be one
// of ours and is reported corrupt without being read.
func readFile(f *os.File, limit int64) ([]byte, fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() < diskHdrLen || fi.Size() > limit {
		return nil, fi, errCorrupt
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fi, errCorrupt
		}
		return nil, fi, err
	}
	return b, fi, nil
}

// Set writes key's file to a temp file in its final directory, then renames
// it into place: readers see the old file or the new one, never a part. The
// index is then updated and least recently used files are evicted until the
// total fits MaxBytes. A file larger than MaxBytes returns ErrTooLarge.
// Files are not fsynced: after a power loss a file may be torn, and then
// Get and NewDisk treat it as absent.
func (d *Disk) Set(ctx context.Context, key, val []byte, ttl time.Duration) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := checkSet(key, ttl)
	if err == nil && diskHdrLen+int64(len(key))+int64(len(val)) > d.max {
		err = ErrTooLarge
	}
	if err != nil {
		if err == ErrTooLarge {
			_ = d.Delete(ctx, key)
		}
		return err
	}
	sum := sha256.Sum256(key)
	p := d.path(&sum)
	expires := d.now().Add(ttl).UnixNano()
	tmp, err := writeTemp(filepath.Dir(p), appendHeader(make([]byte, 0, diskHdrLen+len(key)), key, val, expires), val)
	if err != nil {
		return fmt.Errorf("store: disk: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		os.Remove(tmp)
		return ErrClosed
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: disk: %w", err)
	}
	e := d.index[sum]
	if e == nil {
		e = &diskEntry{sum: sum}
		d.index[sum] = e
	} else {
		d.used -= e.size
		e.unlink()
	}
	e.size, e.expires = diskHdrLen+int64(len(key))+int64(len(val)), expires
	d.used += e.size
	d.pushFront(e)
	d.evict()
	return nil
}

// writeTemp writes head and val to a new temp file in dir and returns its
// name. The directory is made when missing (the first Set into it, or
// something removed it).
func writeTemp(dir string, head, val []byte) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = os.CreateTemp(dir, tmpPrefix+"*")
		}
	}
	if err != nil {
		return "", err
	}
	_, err = f.Write(head)
	if err == nil {
		_, err = f.Write(val)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// Delete removes key's file.
func (d *Disk) Delete(ctx context.Context, key []byte) error {
	if d.closed.Load() {
		return ErrClosed
	}
	sum := sha256.Sum256(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.index[sum]; e != nil {
		d.drop(e)
	}
	if err := os.Remove(d.path(&sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: disk: %w", err)
	}
	return nil
}

// Close stops the sweeper and waits for it. The files stay for the next
// NewDisk on the same Dir.
func (d *Disk) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	close(d.stop)
	<-d.done
	return nil
}
