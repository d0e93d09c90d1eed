package proxy

import (
	"net"
	"sync/atomic"
	"time"
)

// writeDeadlines remembers the write deadline last set on each client
// connection fasthttp serves, so that a connection carrying many short
// responses has its limits.write_timeout deadline re-armed once per quarter
// of the timeout rather than once per response: each SetWriteDeadline is a
// runtime timer change and several clock reads, which a keep-alive
// connection paid on every request. A deadline is armed write_timeout plus a
// quarter ahead and kept while at least write_timeout of it is left, so a
// client that stops reading is cut after write_timeout to 1.25×write_timeout.
//
// Slots are direct-mapped by fasthttp's connection id. A slot holds a tag of
// the id and the deadline in one word, so a connection never trusts a
// deadline another connection stored (it re-arms instead). Only the
// goroutine serving a connection reads or writes the connection's deadline.
type writeDeadlines struct {
	epoch time.Time // deadlines are stored as milliseconds since epoch
	slots [writeDeadlineSlots]atomic.Uint64
}

const (
	writeDeadlineSlots = 4096 // a power of two
	deadlineBits       = 40   // milliseconds: 34 years
	deadlineMask       = 1<<deadlineBits - 1
)

func newWriteDeadlines() *writeDeadlines { return &writeDeadlines{epoch: time.Now()} }

// now is the time from the monotonic clock alone (one clock read; time.Now
// makes two), which is all a deadline needs.
func (w *writeDeadlines) now() time.Time { return w.epoch.Add(time.Since(w.epoch)) }

// arm makes sure conn's write deadline is at least d from now.
func (w *writeDeadlines) arm(id uint64, conn net.Conn, now time.Time, d time.Duration) error {
	slot := &w.slots[id&(writeDeadlineSlots-1)]
	tag := id / writeDeadlineSlots << deadlineBits
	nowMS := now.Sub(w.epoch).Milliseconds()
	if v := slot.Load(); v&^deadlineMask == tag && int64(v&deadlineMask)-nowMS > d.Milliseconds() {
		return nil
	}
	by := now.Add(d + d/4)
	slot.Store(tag | uint64(by.Sub(w.epoch).Milliseconds())&deadlineMask)
	return conn.SetWriteDeadline(by)
}

// forget drops what is known of conn id's deadline (after it was set
// elsewhere).
func (w *writeDeadlines) forget(id uint64) {
	w.slots[id&(writeDeadlineSlots-1)].Store(0)
}
