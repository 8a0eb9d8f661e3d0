package store

import (
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
	"time"
)

// The Disk store's index: the files it knows, their sizes, expiries and
// recency (a list, most recently used first), and the work that keeps it
// true: hits, removals, eviction, the sweeper and the rebuild on start.
// evict, drop, pushFront and unlink expect Disk.mu held; the rest take it.

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
