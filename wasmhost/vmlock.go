package wasmhost

import (
	"sync/atomic"
	"time"
)

// vmLock serializes the calls into one VM, with a bounded wait. Unlike a
// channel used as a semaphore, which hands the lock to the longest waiter
// even while that goroutine is parked, a goroutine that finds vmLock free
// takes it: under contention (many requests pinned to a few VMs) the VM
// goes to a goroutine already running rather than idling until a parked
// one is scheduled, which made every callback cost a context switch.
// Waiters are woken one per unlock and retry until their deadline.
type vmLock struct {
	held    atomic.Bool
	waiters atomic.Int32
	wake    chan struct{} // capacity 1: an unlock's wake-up token
}

func newVMLock() vmLock { return vmLock{wake: make(chan struct{}, 1)} }

func (l *vmLock) tryLock() bool { return !l.held.Load() && l.held.CompareAndSwap(false, true) }

// lockBy takes the lock, waiting until deadline at most.
func (l *vmLock) lockBy(deadline time.Time) bool {
	if l.tryLock() {
		return true
	}
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		// Checked after waiters is raised: an unlock either sees the
		// waiter (and leaves a token) or happened before this try.
		if l.tryLock() {
			return true
		}
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		if t == nil {
			t = time.NewTimer(d)
		}
		select {
		case <-l.wake:
		case <-t.C:
			return l.tryLock()
		}
	}
}

func (l *vmLock) unlock() {
	l.held.Store(false)
	if l.waiters.Load() > 0 {
		select {
		case l.wake <- struct{}{}:
		default: // a token is already waiting
		}
	}
}
