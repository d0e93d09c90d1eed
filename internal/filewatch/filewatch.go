// Package filewatch reports when watched files change content on disk.
//
// It watches the directories that hold the files, not the files: editors
// and deploy tools replace a file by writing a temporary one and renaming it
// into place, which a watch on the old inode never sees. Events for one file
// are debounced (a quiet period after the last event) so that a file being
// written in several chunks is read once, whole; and a file is reported only
// when its SHA-256 differs from the last one reported, so a touch or a
// rewrite with the same bytes reloads nothing.
package filewatch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultQuiet is the debounce period used when New is given zero.
const DefaultQuiet = 20 * time.Millisecond

// Watcher watches a set of files. Its callback runs on one goroutine, one
// call at a time, so it may do slow work (compile a plugin) without locking.
type Watcher struct {
	fs       *fsnotify.Watcher
	log      *slog.Logger
	quiet    time.Duration
	onChange func(path string)

	mu     sync.Mutex
	files  map[string][32]byte // abs path → last reported hash
	dirs   map[string]int      // watched dir → number of files in it
	timers map[string]*time.Timer

	changes chan string
	done    chan struct{}
	wg      sync.WaitGroup
}

// New starts a watcher. onChange receives the absolute path of a file whose
// content changed.
func New(log *slog.Logger, quiet time.Duration, onChange func(path string)) (*Watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("start file watcher: %w", err)
	}
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{
		fs:       fsw,
		log:      log,
		quiet:    quiet,
		onChange: onChange,
		files:    map[string][32]byte{},
		dirs:     map[string]int{},
		timers:   map[string]*time.Timer{},
		// One pending change per file at most is useful; a small buffer
		// keeps the event loop from blocking on a slow callback.
		changes: make(chan string, 64),
		done:    make(chan struct{}),
	}
	w.wg.Add(2)
	go w.eventLoop()
	go w.callbackLoop()
	return w, nil
}

// Set replaces the set of watched files. Files already watched keep their
// last hash; new ones are hashed now, so only later changes are reported.
func (w *Watcher) Set(paths []string) error {
	want := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch %q: %w", p, err)
		}
		want[abs] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for abs := range want {
		if _, ok := w.files[abs]; ok {
			continue
		}
		dir := filepath.Dir(abs)
		if w.dirs[dir] == 0 {
			if err := w.fs.Add(dir); err != nil {
				errs = append(errs, fmt.Errorf("watch directory %q: %w", dir, err))
				continue
			}
		}
		w.dirs[dir]++
		sum, _ := hashFile(abs)
		w.files[abs] = sum
	}
	for abs := range w.files {
		if want[abs] {
			continue
		}
		delete(w.files, abs)
		if t := w.timers[abs]; t != nil {
			t.Stop()
			delete(w.timers, abs)
		}
		dir := filepath.Dir(abs)
		if w.dirs[dir]--; w.dirs[dir] <= 0 {
			delete(w.dirs, dir)
			_ = w.fs.Remove(dir)
		}
	}
	return errors.Join(errs...)
}

// Close stops watching and waits for a running callback to return.
func (w *Watcher) Close() error {
	select {
	case <-w.done:
		return nil
	default:
	}
	close(w.done)
	err := w.fs.Close()
	w.mu.Lock()
	for _, t := range w.timers {
		t.Stop()
	}
	w.mu.Unlock()
	w.wg.Wait()
	return err
}

func (w *Watcher) eventLoop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Chmod) == 0 {
				continue
			}
			w.schedule(filepath.Clean(ev.Name))
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Warn("file watcher error", "err", err)
		}
	}
}

// schedule (re)starts the quiet-period timer of a watched file.
func (w *Watcher) schedule(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.files[path]; !ok {
		return
	}
	if t := w.timers[path]; t != nil {
		t.Reset(w.quiet)
		return
	}
	w.timers[path] = time.AfterFunc(w.quiet, func() { w.settle(path) })
}

// settle runs when a file has been quiet: report it if its content changed.
func (w *Watcher) settle(path string) {
	sum, err := hashFile(path)
	w.mu.Lock()
	delete(w.timers, path)
	last, watched := w.files[path]
	changed := watched && err == nil && sum != last
	if changed {
		w.files[path] = sum
	}
	w.mu.Unlock()
	if err != nil {
		// Removed or unreadable mid-replace: the rename that completes the
		// replacement brings another event.
		w.log.Debug("watched file unreadable", "path", path, "err", err)
		return
	}
	if !changed {
		return
	}
	select {
	case w.changes <- path:
	case <-w.done:
	}
}

func (w *Watcher) callbackLoop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case p := <-w.changes:
			w.onChange(p)
		}
	}
}

func hashFile(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
