package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openDisk(t *testing.T, o DiskOptions) *Disk {
	t.Helper()
	d, err := NewDisk(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func (d *Disk) fileOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return d.path(&sum)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// diskFiles lists the final files under dir.
func diskFiles(t *testing.T, dir string) (n int, total int64) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && len(de.Name()) == 64 {
			fi, _ := de.Info()
			n++
			total += fi.Size()
		}
		return nil
	})
	return n, total
}

func TestDiskRestart(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDisk(DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, d, []byte("live"), []byte("kept"), time.Hour)
	mustSet(t, d, []byte("dies"), []byte("gone"), time.Hour)
	// "dies" expires an hour before now, as if it had been written long ago.
	d.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	mustSet(t, d, []byte("dies"), []byte("gone"), time.Hour)
	d.now = time.Now
	dead := d.fileOf("dies")
	d.Close()

	d2 := openDisk(t, DiskOptions{Dir: dir})
	if got := mustGet(t, d2, []byte("live")); string(got) != "kept" {
		t.Fatalf("after restart Get = %q", got)
	}
	if _, err := d2.Get(context.Background(), []byte("dies")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired entry after restart: %v", err)
	}
	if exists(dead) {
		t.Fatal("NewDisk left an expired file")
	}
	if d2.used != int64(diskHdrLen+len("live")+len("kept")) || len(d2.index) != 1 {
		t.Fatalf("index after restart: %d entries, %d bytes", len(d2.index), d2.used)
	}
}

func TestDiskDamagedFiles(t *testing.T) {
	val := bytes.Repeat([]byte("0123456789"), 100)
	tests := []struct {
		name   string
		damage func(b []byte) []byte
		stays  bool // the file is left in place (it is another key's)
	}{
		{"value byte flipped", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }, false},
		{"expiry flipped", func(b []byte) []byte { b[12] ^= 0x40; return b }, false},
		{"key byte flipped", func(b []byte) []byte { b[diskHdrLen] ^= 1; return b }, false},
		{"truncated value", func(b []byte) []byte { return b[:len(b)-1] }, false},
		{"truncated header", func(b []byte) []byte { return b[:10] }, false},
		{"empty", func(b []byte) []byte { return nil }, false},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, false},
		{"newer version", func(b []byte) []byte { b[4] = 2; return b }, false},
		{"appended bytes", func(b []byte) []byte { return append(b, 0) }, false},
		{"another key's file", func(b []byte) []byte {
			other := appendHeader(nil, []byte("other"), val, time.Now().Add(time.Hour).UnixNano())
			return append(other, val...)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := openDisk(t, DiskOptions{Dir: t.TempDir()})
			mustSet(t, d, []byte("k"), val, time.Hour)
			p := d.fileOf("k")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Get(context.Background(), []byte("k")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get = %v, want ErrNotFound", err)
			}
			if exists(p) != tc.stays {
				t.Fatalf("file exists = %v after Get, want %v", exists(p), tc.stays)
			}
			if !tc.stays && (len(d.index) != 0 || d.used != 0) {
				t.Fatalf("index keeps %d entries, %d bytes", len(d.index), d.used)
			}
			// And a fresh Set repairs it.
			mustSet(t, d, []byte("k"), val, time.Hour)
			mustGet(t, d, []byte("k"))
		})
	}
}

func TestDiskDamagedFilesOnStart(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDisk(DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, d, []byte("good"), []byte("v"), time.Hour)
	mustSet(t, d, []byte("torn"), []byte("value"), time.Hour)
	torn := d.fileOf("torn")
	d.Close()
	if err := os.Truncate(torn, diskHdrLen+2); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Dir(torn)
	stray := filepath.Join(sub, tmpPrefix+"123456")
	notOurs := filepath.Join(dir, "README")
	for _, p := range []string{stray, notOurs} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d2 := openDisk(t, DiskOptions{Dir: dir})
	if exists(torn) || exists(stray) {
		t.Fatalf("NewDisk left a torn file (%v) or a temp file (%v)", exists(torn), exists(stray))
	}
	if !exists(notOurs) {
		t.Fatal("NewDisk removed a file that is not the cache's")
	}
	mustGet(t, d2, []byte("good"))
}

func TestDiskBudgetEvictsLRU(t *testing.T) {
	val := make([]byte, 1000)
	size := int64(diskHdrLen + 1 + len(val))
	d := openDisk(t, DiskOptions{Dir: t.TempDir(), MaxBytes: 3 * size})
	for _, k := range []string{"a", "b", "c"} {
		mustSet(t, d, []byte(k), val, time.Hour)
	}
	mustGet(t, d, []byte("a")) // b is now the least recently used
	mustSet(t, d, []byte("d"), val, time.Hour)
	present := func() string {
		s := ""
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			if _, err := d.Get(context.Background(), []byte(k)); err == nil {
				s += k
			}
		}
		return s
	}
	if got := present(); got != "acd" {
		t.Fatalf("after the fourth Set: %q present, want acd (b least recently used)", got)
	}
	// present() read a, c, d in that order: a is now the oldest.
	mustSet(t, d, []byte("e"), make([]byte, 2*len(val)), time.Hour)
	if got := present(); got != "de" {
		t.Fatalf("after a double-size Set: %q present, want de", got)
	}
	if n, total := diskFiles(t, d.dir); n != 2 || total != d.used || total > d.max {
		t.Fatalf("%d files of %d bytes on disk, index says %d, budget %d", n, total, d.used, d.max)
	}
	// A value that can never fit.
	if err := d.Set(context.Background(), []byte("huge"), make([]byte, 3*size), time.Hour); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Set larger than MaxBytes = %v", err)
	}
}

func TestDiskRestartWithSmallerBudget(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDisk(DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 1000)
	for i, k := range []string{"old", "mid", "new"} {
		mustSet(t, d, []byte(k), val, time.Hour)
		// Modification times order the index on start.
		mt := time.Now().Add(time.Duration(i-3) * time.Minute)
		os.Chtimes(d.fileOf(k), mt, mt)
	}
	d.Close()
	size := int64(diskHdrLen + 3 + len(val))
	d2 := openDisk(t, DiskOptions{Dir: dir, MaxBytes: 2 * size})
	if _, err := d2.Get(context.Background(), []byte("old")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the least recently written file survived a smaller budget: %v", err)
	}
	mustGet(t, d2, []byte("mid"))
	mustGet(t, d2, []byte("new"))
}

func TestDiskSweep(t *testing.T) {
	d := openDisk(t, DiskOptions{Dir: t.TempDir(), SweepEvery: 20 * time.Millisecond})
	mustSet(t, d, []byte("short"), []byte("v"), 30*time.Millisecond)
	mustSet(t, d, []byte("long"), []byte("v"), time.Hour)
	short := d.fileOf("short")
	eventually(t, 2*time.Second, "the sweeper removing an expired file", func() error {
		if exists(short) {
			return errors.New("still there")
		}
		return nil
	})
	mustGet(t, d, []byte("long"))
	d.mu.Lock()
	n, used := len(d.index), d.used
	d.mu.Unlock()
	if n != 1 || used != int64(diskHdrLen+len("long")+1) {
		t.Fatalf("index after sweep: %d entries, %d bytes", n, used)
	}
}

// TestDiskSameKeyRace has writers replace one key with values of many
// sizes while readers read it: a reader sees a whole value or nothing.
func TestDiskSameKeyRace(t *testing.T) {
	d := openDisk(t, DiskOptions{Dir: t.TempDir(), MaxBytes: 64 << 20})
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := 1 + (w*7919+i*104729)%(256<<10)
				val := bytes.Repeat([]byte{byte(n)}, n)
				if err := d.Set(ctx, []byte("k"), val, time.Hour); err != nil {
					errs <- err
					return
				}
				if i%5 == 4 {
					d.Delete(ctx, []byte("k"))
				}
			}
		}()
	}
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := d.Get(ctx, []byte("k"))
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 || byte(len(got)) != got[0] || len(bytes.Trim(got, string(got[:1]))) != 0 {
					errs <- fmt.Errorf("Get saw a mixed or torn value of %d bytes", len(got))
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, total := diskFiles(t, d.dir); total != d.used || n != len(d.index) {
		t.Fatalf("%d files of %d bytes on disk, index has %d of %d", n, total, len(d.index), d.used)
	}
}

func TestDiskOptions(t *testing.T) {
	if _, err := NewDisk(DiskOptions{}); err == nil {
		t.Fatal("NewDisk without Dir succeeded")
	}
	if _, err := NewDisk(DiskOptions{Dir: t.TempDir(), MaxBytes: -1}); err == nil {
		t.Fatal("NewDisk with a negative MaxBytes succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := NewDisk(DiskOptions{Dir: file}); err == nil {
		t.Fatal("NewDisk on a regular file succeeded")
	}
	d := openDisk(t, DiskOptions{Dir: filepath.Join(t.TempDir(), "a", "b")})
	if fi, err := os.Stat(d.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("Dir: %v, %v", fi.Mode(), err)
	}
	if d.max != DefaultDiskMaxBytes {
		t.Fatalf("default MaxBytes = %d", d.max)
	}
	// A fan-out directory removed under a running store is made again.
	os.RemoveAll(filepath.Dir(d.fileOf("k")))
	mustSet(t, d, []byte("k"), []byte("v"), time.Hour)
	mustGet(t, d, []byte("k"))
}
