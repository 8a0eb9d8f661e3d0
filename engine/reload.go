package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reloader applies a config file to an engine when the file changes and
// when asked (SIGHUP). A new config goes through the one load path (decode
// and compile, as `vkp validate`), is compiled into a snapshot off the
// request path and swapped in whole (Engine.Apply): requests in flight
// finish on the snapshot they started with. A file with any problem is
// rejected, every problem logged with its path and line:col, and the
// running config keeps serving.
//
// Watching: the file's directory is watched (fsnotify: inotify on Linux),
// not the file, because editors save by writing a new file and renaming it
// over the old one, and a Kubernetes ConfigMap volume swaps a "..data"
// symlink. Any event in the directory schedules a look at the file a
// moment later (reloadDebounce, so a burst of events is one reload); the
// look resolves symlinks and hashes the content, and reloads only when
// either changed. A file that is missing for a moment (between an editor's
// delete and create) is waited for, not reported. On a network file system
// inotify does not see changes made on other machines: send SIGHUP then.
type Reloader struct {
	path string
	e    *Engine
	log  *slog.Logger

	mu     sync.Mutex // one reload at a time
	target string     // the resolved path of the config applied last
	sum    [32]byte   // and its content's hash
}

// reloadDebounce is how long events must settle before the file is read.
const reloadDebounce = 100 * time.Millisecond

// NewReloader returns a reloader for path. Call it before the first
// LoadConfig of that file: the file as it is now is taken as the one
// applied, so a change written between this call and the watcher being
// armed is still seen (at worst the same content is applied twice, never a
// change missed).
func NewReloader(path string) *Reloader {
	r := &Reloader{path: path}
	r.target, r.sum, _ = r.fingerprint()
	return r
}

// Attach names the engine reloads are applied to and the logger they
// report to; call it before Reload or Watch.
func (r *Reloader) Attach(e *Engine, log *slog.Logger) {
	r.e, r.log = e, log
}

func (r *Reloader) fingerprint() (string, [32]byte, error) {
	target, err := filepath.EvalSymlinks(r.path)
	if err != nil {
		return "", [32]byte{}, err
	}
	b, err := os.ReadFile(target)
	if err != nil {
		return "", [32]byte{}, err
	}
	return target, sha256.Sum256(b), nil
}

// Reload reads the file and applies it. Unless forced (SIGHUP), an
// unchanged file (same target, same content) is left alone. It reports
// whether a new config was applied.
func (r *Reloader) Reload(reason string, force bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	target, sum, err := r.fingerprint()
	if err != nil {
		if !force && errors.Is(err, fs.ErrNotExist) {
			r.log.Debug("config file missing for now; waiting for it", "path", r.path)
			return false
		}
		r.log.Error("reload rejected", "reason", reason, "path", r.path, "problems", []string{err.Error()})
		r.e.CountReload(false)
		return false
	}
	if !force && target == r.target && sum == r.sum {
		return false
	}
	cfg, err := LoadConfig(r.path)
	if err != nil {
		problems := []string{err.Error()}
		var ce *ConfigError
		if errors.As(err, &ce) {
			problems = ce.Problems
		}
		r.log.Error("reload rejected: the running config keeps serving", "reason", reason, "path", r.path, "problems", problems)
		r.target, r.sum = target, sum // not retried until the file changes again
		r.e.CountReload(false)
		return false
	}
	old := r.e.Current().Config
	if err := r.e.Apply(cfg); err != nil {
		r.log.Error("reload rejected: the running config keeps serving", "reason", reason, "path", r.path, "problems", []string{err.Error()})
		r.target, r.sum = target, sum
		r.e.CountReload(false)
		return false
	}
	r.target, r.sum = target, sum
	r.e.CountReload(true)
	attrs := []any{"reason", reason, "path", r.path, "goroutines", runtime.NumGoroutine()}
	attrs = append(attrs, describeChange(old, cfg)...)
	if !slices.EqualFunc(old.Listen, cfg.Listen, func(a, b ListenConfig) bool { return slices.Equal(a.Addresses, b.Addresses) }) {
		attrs = append(attrs, "listen", "changed in the file; takes effect at the next start")
	}
	r.log.Info("reload applied", attrs...)
	for _, w := range cfg.Warnings {
		r.log.Warn("config warning", "warning", w)
	}
	return true
}

// Watch watches the file's directory until ctx ends.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dir := filepath.Dir(r.path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	// The file may have changed between the first load and now, with no
	// watch to see it: look once.
	r.Reload("file changed", false)
	var due <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			r.log.Debug("config directory event", "event", ev.String())
			if timer == nil {
				timer = time.NewTimer(reloadDebounce)
			} else {
				timer.Reset(reloadDebounce)
			}
			due = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("config watch error", "error", err.Error())
		case <-due:
			due = nil
			r.Reload("file changed", false)
		}
	}
}

// describeChange lists what a reload changes: routes and clusters added,
// removed and changed, by id.
func describeChange(old, cur *Config) []any {
	routes := func(c *Config) map[string]*RouteConfig {
		m := map[string]*RouteConfig{}
		for _, r := range c.Routes {
			m[r.ID] = r
		}
		return m
	}
	var out []any
	add := func(name string, ids []string) {
		if len(ids) > 0 {
			sort.Strings(ids)
			out = append(out, name, strings.Join(ids, ","))
		}
	}
	ro, rn := routes(old), routes(cur)
	var added, removed, changed []string
	for id, r := range rn {
		switch o, ok := ro[id]; {
		case !ok:
			added = append(added, id)
		case !sameRoute(o, r):
			changed = append(changed, id)
		}
	}
	for id := range ro {
		if rn[id] == nil {
			removed = append(removed, id)
		}
	}
	add("routes_added", added)
	add("routes_removed", removed)
	add("routes_changed", changed)
	added, removed, changed = nil, nil, nil
	for key, c := range cur.Clusters {
		switch o, ok := old.Clusters[key]; {
		case !ok:
			added = append(added, c.ID)
		case !reflect.DeepEqual(o, c):
			changed = append(changed, c.ID)
		}
	}
	for key, c := range old.Clusters {
		if cur.Clusters[key] == nil {
			removed = append(removed, c.ID)
		}
	}
	add("clusters_added", added)
	add("clusters_removed", removed)
	add("clusters_changed", changed)
	if len(out) == 0 {
		out = append(out, "changes", "none")
	}
	return out
}

func sameRoute(a, b *RouteConfig) bool {
	x, y := *a, *b
	x.metaKeys, y.metaKeys = nil, nil
	return reflect.DeepEqual(x, y)
}
