package proxy

import (
	"net"
	"testing"
	"time"
)

// deadlineCounter counts the write deadlines set on a connection.
type deadlineCounter struct {
	net.Conn
	sets int
	last time.Time
}

func (c *deadlineCounter) SetWriteDeadline(t time.Time) error {
	c.sets++
	c.last = t
	return nil
}

func TestWriteDeadlinesReArm(t *testing.T) {
	const d = 10 * time.Second
	w := newWriteDeadlines()
	a, b := &deadlineCounter{}, &deadlineCounter{}
	const idA, idB = 7, 7 + writeDeadlineSlots // the same slot
	now := time.Now()
	steps := []struct {
		name     string
		id       uint64
		conn     *deadlineCounter
		at       time.Duration
		wantSets int
	}{
		{"first response arms", idA, a, 0, 1},
		{"next response soon after keeps it", idA, a, time.Millisecond, 1},
		{"still more than d left", idA, a, d/4 - time.Second, 1},
		{"another connection in the slot arms its own", idB, b, d/4 - time.Second, 1},
		{"the first one no longer trusts the slot", idA, a, d / 4, 2},
		{"less than d left re-arms", idA, a, d/4 + d/4 + 10*time.Millisecond, 3},
	}
	for _, s := range steps {
		at := now.Add(s.at)
		if err := w.arm(s.id, s.conn, at, d); err != nil {
			t.Fatal(err)
		}
		if s.conn.sets != s.wantSets {
			t.Fatalf("%s: %d deadlines set, want %d", s.name, s.conn.sets, s.wantSets)
		}
		if left := s.conn.last.Sub(at); left < d {
			t.Fatalf("%s: deadline %v ahead, want at least %v", s.name, left, d)
		}
	}
	w.forget(idA)
	if err := w.arm(idA, a, now.Add(d/4+d/4+20*time.Millisecond), d); err != nil {
		t.Fatal(err)
	}
	if a.sets != 4 {
		t.Fatalf("after forget: %d deadlines set, want 4", a.sets)
	}
}
