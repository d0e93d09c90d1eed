package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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

// readLimits enforces limits.read_header_timeout and limits.idle_timeout on
// client connections with a periodic sweep instead of fasthttp's read
// deadlines. fasthttp sets two per keep-alive request (the idle one before
// the next request, the header one at its first byte), each a clock read
// and a runtime timer change: about 0.4 µs per request, measured, that a
// bare fasthttp proxy without timeouts does not pay.
//
// Each served connection has a watch holding the phase it is in and since
// when, on a coarse clock the sweep keeps (no clock read per request):
// reading a header (from the first byte, or from the connection's start for
// its first request, as fasthttp counts), handled (no limit: the handler,
// a request body under fasthttp's own body deadline, an SSE stream), or
// idle between requests. The sweep cuts a connection that outstayed its
// phase's limit by setting a read deadline in the past, which fails
// fasthttp's blocked read exactly as an expired deadline would: a 408 for a
// header begun, a close for an idle connection. A limit is enforced between
// its value and its value plus two sweep intervals (an eighth of the
// shorter limit, at most 250ms).
//
// The watches are bounded by the connections fasthttp serves (limits.
// max_conns); the sweep runs only while there are any.
type readLimits struct {
	header, idle time.Duration
	every        time.Duration
	epoch        time.Time
	now          atomic.Int64 // milliseconds since epoch as of the last sweep
	// A connection's watch is in its slot (direct-mapped by the address
	// of its *net.TCPConn), or in overflow when the slot is taken or the
	// connection is of another type: a sync.Map lookup cost about 0.1 µs
	// per phase change under load.
	slots    [watchSlots]atomic.Pointer[connWatch]
	overflow sync.Map // net.Conn -> *connWatch
	nOver    atomic.Int64
	n        atomic.Int64 // watched connections
	running  atomic.Bool  // a sweep goroutine is on
}

const (
	watchSlotBits = 12
	watchSlots    = 1 << watchSlotBits
)

// Phases of a watched connection (connWatch.state's top bits).
const (
	phaseHeader = iota + 1
	phaseHandled
	phaseIdle
	phaseShift = 60
	sinceMask  = 1<<phaseShift - 1
)

// connWatch is one connection's phase (phase<<phaseShift | since, in
// milliseconds since readLimits.epoch). Only the goroutine serving the
// connection changes it, apart from the sweep's cut.
type connWatch struct {
	conn  net.Conn
	tcp   *net.TCPConn // conn, when it is one: a pointer compare finds a slot's owner
	state atomic.Uint64
	// fresh: no request read yet, so the first header counts from the
	// connection's start. bodyDeadline: fasthttp set its body read
	// deadline (Proxy.headerReceived) for the request being handled, to be
	// lifted once it is answered. Both belong to the serving goroutine.
	fresh, bodyDeadline bool
}

// newReadLimits returns nil when neither limit is set. An idle limit of 0
// falls back to the header limit, as fasthttp's does.
func newReadLimits(header, idle time.Duration) *readLimits {
	if idle <= 0 {
		idle = header
	}
	if idle <= 0 {
		return nil // and so header <= 0
	}
	every := idle
	if header > 0 && header < every {
		every = header
	}
	every = min(max(every/8, 5*time.Millisecond), 250*time.Millisecond)
	return &readLimits{header: header, idle: idle, every: every, epoch: time.Now()}
}

func stamp(phase, since int64) uint64 {
	return uint64(phase)<<phaseShift | uint64(since)&sinceMask
}

// opened starts watching a new connection.
func (l *readLimits) opened(c net.Conn) {
	now := time.Since(l.epoch).Milliseconds() // once per connection
	w := &connWatch{conn: c, fresh: true}
	w.tcp, _ = c.(*net.TCPConn)
	w.state.Store(stamp(phaseHeader, now))
	if slot, _ := l.slot(c); slot == nil || !slot.CompareAndSwap(nil, w) {
		l.overflow.Store(c, w)
		l.nOver.Add(1)
	}
	l.n.Add(1)
	if !l.running.Load() && l.running.CompareAndSwap(false, true) {
		l.now.Store(now)
		go l.run()
	}
}

// closed stops watching c (closed or hijacked).
func (l *readLimits) closed(c net.Conn) {
	if slot, tc := l.slot(c); slot != nil {
		if w := slot.Load(); w != nil && w.tcp == tc && slot.CompareAndSwap(w, nil) {
			l.n.Add(-1)
			return
		}
	}
	if _, ok := l.overflow.LoadAndDelete(c); ok {
		l.nOver.Add(-1)
		l.n.Add(-1)
	}
}

// slot returns c's slot and c as a *net.TCPConn, or nil for another kind
// of connection.
func (l *readLimits) slot(c net.Conn) (*atomic.Pointer[connWatch], *net.TCPConn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, nil
	}
	// Fibonacci hashing of the address: the top bits of the product.
	h := uint64(uintptr(unsafe.Pointer(tc))) * 0x9e3779b97f4a7c15
	return &l.slots[h>>(64-watchSlotBits)], tc
}

func (l *readLimits) watch(c net.Conn) *connWatch {
	if slot, tc := l.slot(c); slot != nil {
		if w := slot.Load(); w != nil && w.tcp == tc {
			return w
		}
	}
	if l.nOver.Load() == 0 {
		return nil
	}
	if w, ok := l.overflow.Load(c); ok {
		return w.(*connWatch)
	}
	return nil
}

// active: the first byte of a request arrived.
func (l *readLimits) active(c net.Conn) {
	if w := l.watch(c); w != nil {
		if w.fresh {
			w.fresh = false // the first header counts from the start
			return
		}
		w.state.Store(stamp(phaseHeader, l.now.Load()))
	}
}

// handled: the header is in and the handler runs; bodyDeadline says
// fasthttp set its body read deadline for this request.
func (l *readLimits) handled(c net.Conn, bodyDeadline bool) {
	if w := l.watch(c); w != nil {
		w.fresh = false
		w.bodyDeadline = w.bodyDeadline || bodyDeadline
		w.state.Store(stamp(phaseHandled, 0))
	}
}

// idled: the response is written and the connection waits for the next
// request.
func (l *readLimits) idled(c net.Conn) {
	if w := l.watch(c); w != nil {
		w.fresh = false
		w.state.Store(stamp(phaseIdle, l.now.Load()))
		if w.bodyDeadline {
			w.bodyDeadline = false
			_ = c.SetReadDeadline(time.Time{})
		}
	}
}

func (l *readLimits) run() {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for range t.C {
		l.sweep(time.Since(l.epoch).Milliseconds())
		if l.n.Load() == 0 {
			l.running.Store(false)
			// A connection opened since the check may have seen this
			// goroutine still running: go on for it unless it started
			// another.
			if l.n.Load() == 0 || !l.running.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// aLongTimeAgo is a read deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// sweep cuts the connections past their phase's limit at now (milliseconds
// since epoch). A stamp can be up to one sweep old when taken, so a limit
// counts from one interval later than the stamp: never early.
func (l *readLimits) sweep(now int64) {
	l.now.Store(now)
	slack := l.every.Milliseconds()
	header, idle := l.header.Milliseconds()+slack, l.idle.Milliseconds()+slack
	check := func(w *connWatch) {
		s := w.state.Load()
		var limit int64
		switch s >> phaseShift {
		case phaseHeader:
			limit = header
		case phaseIdle:
			limit = idle
		default:
			return
		}
		if limit > slack && now-int64(s&sinceMask) >= limit && w.state.CompareAndSwap(s, stamp(phaseHandled, 0)) {
			_ = w.conn.SetReadDeadline(aLongTimeAgo)
		}
	}
	for i := range l.slots {
		if w := l.slots[i].Load(); w != nil {
			check(w)
		}
	}
	if l.nOver.Load() > 0 {
		l.overflow.Range(func(_, v any) bool {
			check(v.(*connWatch))
			return true
		})
	}
}
