package event

import (
	"bytes"
	"testing"
)

// TestKeep checks that what an event keeps is a copy, stays as it was
// while more is kept (the storage grows), and survives the caller reusing
// its buffer.
func TestKeep(t *testing.T) {
	for _, e := range []*Event{New(), {}} {
		src := []byte("x-request-id")
		name := e.KeepString(src)
		body := e.Keep([]byte("body"))
		copy(src, "XXXXXXXXXXXX")
		e.AddHeader([]byte("Host"), []byte("example.test"))
		for range 100 { // grow the storage past its first array
			e.AddHeader(bytes.Repeat([]byte("n"), 50), bytes.Repeat([]byte("v"), 50))
		}
		body = append(body, '!') // must not write into what is kept next
		if name != "x-request-id" || string(body[:4]) != "body" {
			t.Errorf("kept %q and %q", name, body)
		}
		if h := e.Headers[0]; h.Name != "Host" || h.Value != "example.test" {
			t.Errorf("first header %+v", h)
		}
		if len(e.Headers) != 101 || e.Headers[100].Value != string(bytes.Repeat([]byte("v"), 50)) {
			t.Errorf("%d headers, last %+v", len(e.Headers), e.Headers[len(e.Headers)-1])
		}
		if e.KeepString(nil) != "" || len(e.Keep(nil)) != 0 {
			t.Error("keeping nothing returned something")
		}
		e.Release()
	}
}

// TestRelease checks the pool's rules: a released event comes back empty,
// a second Release does nothing, and an event that did not come from New
// is left alone.
func TestRelease(t *testing.T) {
	e := New()
	e.Session, e.Type, e.Status = "s", Response, 200
	e.AddHeader([]byte("A"), []byte("1"))
	e.Release()
	if e.state != pooled || e.Session != "" || e.Status != 0 || len(e.Headers) != 0 || len(e.own) != 0 {
		t.Errorf("released event not reset: %+v", e)
	}
	if cap(e.Headers) == 0 || cap(e.own) == 0 {
		t.Error("released event dropped its storage")
	}
	e.Release() // no-op: not owned
	if e.state != pooled {
		t.Errorf("second Release changed the state to %d", e.state)
	}

	lit := &Event{Session: "s", Headers: []Header{{"A", "1"}}}
	lit.Release()
	if lit.Session != "s" || len(lit.Headers) != 1 || lit.state != literal {
		t.Errorf("Release touched an event not from New: %+v", lit)
	}
	var nilEvent *Event
	nilEvent.Release()

	// An event that kept an outsized body is not pooled.
	big := New()
	big.Body = big.Keep(make([]byte, maxPooledBytes+1))
	big.Release()
	if big.state != literal || len(big.Body) != maxPooledBytes+1 {
		t.Errorf("outsized event: state %d, body %d bytes", big.state, len(big.Body))
	}
}

// TestDiscardReleases checks that Discard, a Sink, honours the ownership
// rule: it releases what it is given.
func TestDiscardReleases(t *testing.T) {
	e := New()
	if !Discard.Record(e) {
		t.Fatal("Discard refused an event")
	}
	if e.state != pooled {
		t.Errorf("Discard left the event in state %d", e.state)
	}
}
