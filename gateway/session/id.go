package session

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

var ids = struct {
	mu      sync.Mutex
	lastMs  uint64
	entropy *ulid.MonotonicEntropy
}{entropy: ulid.Monotonic(rand.Reader, 0)}

// NewID returns a new session id: a ULID, whose first 48 bits are the
// millisecond it was made, so ids sort by creation time and the store can
// expire old sessions with one range delete. The other 80 bits come from
// crypto/rand; ids made within one millisecond increase monotonically (the
// next one adds a random increment below 2^32 to the previous one). Session
// ids identify, they do not authenticate. Safe for concurrent use.
func NewID() string {
	ids.mu.Lock()
	// Read the clock under the lock, and never let it go back (a wall
	// clock step), so every id is greater than the one before.
	now := max(ulid.Timestamp(time.Now()), ids.lastMs)
	ids.lastMs = now
	id, err := ulid.New(now, ids.entropy)
	ids.mu.Unlock()
	if err != nil {
		// The monotonic entropy ran out of room within this millisecond
		// (practically never): take fresh randomness instead.
		id = ulid.MustNew(now, rand.Reader)
	}
	return id.String()
}
