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
	"sort"
	"strings"
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

// touch marks a hit: the entry becomes the most recently used. A file the
// index does not know (written by another process) is adopted, if it is
// still the file at p: a Delete since the read must not be undone.
func (d *Disk) touch(sum *[sha256.Size]byte, h diskHeader, p string, fi fs.FileInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.index[*sum]
	if e == nil {
		if cur, err := os.Lstat(p); err != nil || !os.SameFile(cur, fi) {
			return
		}
		e = &diskEntry{sum: *sum, size: h.size(), expires: h.expires}
		d.index[*sum] = e
		d.used += e.size
		d.pushFront(e)
		d.evict()
		return
	}
	e.unlink()
	d.pushFront(e)
}

// forget drops the index entry for sum when its file is gone (removed by
// hand or by another process), so that the budget stops counting it. The
// path is checked again under the lock: a Set may have just made it.
func (d *Disk) forget(sum *[sha256.Size]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.index[*sum]; e != nil {
		if _, err := os.Lstat(d.path(sum)); errors.Is(err, fs.ErrNotExist) {
			d.drop(e)
		}
	}
}

// removeIf removes the file at p if it is still the one described by fi (a
// Set may have renamed a new one into place since it was opened).
func (d *Disk) removeIf(sum *[sha256.Size]byte, p string, fi fs.FileInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := os.Lstat(p)
	if err != nil || fi == nil || !os.SameFile(cur, fi) {
		return
	}
	os.Remove(p)
	if e := d.index[*sum]; e != nil {
		d.drop(e)
	}
}

// evict removes least recently used files until the total fits; the most
// recently used entry (the one just set) is never removed. Callers hold mu.
func (d *Disk) evict() {
	for d.used > d.max && d.lru.prev != d.lru.next {
		e := d.lru.prev
		os.Remove(d.path(&e.sum))
		d.drop(e)
	}
}

// drop removes an entry from the index. Callers hold mu.
func (d *Disk) drop(e *diskEntry) {
	e.unlink()
	delete(d.index, e.sum)
	d.used -= e.size
}

func (d *Disk) pushFront(e *diskEntry) {
	e.prev, e.next = &d.lru, d.lru.next
	d.lru.next.prev = e
	d.lru.next = e
}

func (e *diskEntry) unlink() {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
		e.prev, e.next = nil, nil
	}
}

// sweeper removes expired files every period until Close.
func (d *Disk) sweeper(every time.Duration) {
	defer close(d.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.sweep()
		}
	}
}

// sweep removes the files the index says have expired. It takes the lock
// per file so that Get and Set wait at most one removal.
func (d *Disk) sweep() {
	now := d.now().UnixNano()
	var dead [][sha256.Size]byte
	d.mu.Lock()
	for sum, e := range d.index {
		if e.expires <= now {
			dead = append(dead, sum)
		}
	}
	d.mu.Unlock()
	for i := range dead {
		select {
		case <-d.stop:
			return
		default:
		}
		d.mu.Lock()
		// Re-checked: a Set since the scan may have made it live again.
		if e := d.index[dead[i]]; e != nil && e.expires <= now {
			os.Remove(d.path(&e.sum))
			d.drop(e)
		}
		d.mu.Unlock()
	}
}

// load rebuilds the index from Dir. Entries enter the LRU list in the order
// of their files' modification times: a restart forgets reads, so the least
// recently written file is evicted first.
func (d *Disk) load() error {
	type found struct {
		e     *diskEntry
		mtime time.Time
	}
	var all []found
	now := d.now().UnixNano()
	subs, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("store: disk: %w", err)
	}
	for _, sd := range subs {
		if n := sd.Name(); !sd.IsDir() || len(n) != 2 || strings.Trim(n, "0123456789abcdef") != "" {
			continue
		}
		sub := filepath.Join(d.dir, sd.Name())
		names, err := os.ReadDir(sub)
		if err != nil {
			return fmt.Errorf("store: disk: %w", err)
		}
		for _, de := range names {
			name := de.Name()
			p := filepath.Join(sub, name)
			if strings.HasPrefix(name, tmpPrefix) {
				os.Remove(p) // a Set that did not finish before a crash
				continue
			}
			var sum [sha256.Size]byte
			if n, err := hex.Decode(sum[:], []byte(name)); err != nil || n != sha256.Size || name != strings.ToLower(name) || name[:2] != filepath.Base(sub) {
				continue // not ours: leave it
			}
			h, mtime, err := readHeader(p, &sum, d.max)
			if err != nil || h.expires <= now {
				os.Remove(p)
				continue
			}
			all = append(all, found{&diskEntry{sum: sum, size: h.size(), expires: h.expires}, mtime})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, f := range all {
		d.index[f.e.sum] = f.e
		d.used += f.e.size
		d.pushFront(f.e)
	}
	d.evict()
	return nil
}

// readHeader reads a file's header and key, checks the size the header
// claims and that the key hashes to the file's name. The value and its CRC
// are checked when Get reads it.
func readHeader(p string, sum *[sha256.Size]byte, limit int64) (diskHeader, time.Time, error) {
	f, err := os.Open(p)
	if err != nil {
		return diskHeader{}, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return diskHeader{}, time.Time{}, err
	}
	var hb [diskHdrLen]byte
	if _, err := io.ReadFull(f, hb[:]); err != nil {
		return diskHeader{}, time.Time{}, errCorrupt
	}
	h, err := parseHeader(hb[:])
	if err != nil || h.size() != fi.Size() || fi.Size() > limit {
		return diskHeader{}, time.Time{}, errCorrupt
	}
	key := make([]byte, h.keyLen)
	if _, err := io.ReadFull(f, key); err != nil || sha256.Sum256(key) != *sum {
		return diskHeader{}, time.Time{}, errCorrupt
	}
	return h, fi.ModTime(), nil
}
