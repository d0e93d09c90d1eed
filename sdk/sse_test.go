package sdk

import (
	"bytes"
	"testing"
)

func TestEventRead(t *testing.T) {
	for _, tc := range []struct {
		raw, name, data, id string
		hasID               bool
	}{
		{"data: hello\n\n", "", "hello", "", false},
		{"event: shout\ndata: a\ndata: b\n\n", "shout", "a\nb", "", false},
		{"event:x\r\nid: 7\r\ndata:no-space\r\n\r\n", "x", "no-space", "7", true},
		{"event: a\revent: b\rdata\r\r", "b", "", "", false},
		{": comment\ndata:  two spaces\n\n", "", " two spaces", "", false},
		{"data: x:y\nid\n\n", "", "x:y", "", true},
	} {
		e := ParseEvent([]byte(tc.raw))
		id, has := e.ID()
		if e.Name() != tc.name || string(e.Data()) != tc.data || id != tc.id || has != tc.hasID {
			t.Errorf("%q: name %q data %q id %q/%v", tc.raw, e.Name(), e.Data(), id, has)
		}
		if !bytes.Equal(e.Bytes(), []byte(tc.raw)) {
			t.Errorf("%q: reading changed the bytes", tc.raw)
		}
	}
}

func TestEventEdit(t *testing.T) {
	up := func(b []byte) { copy(b, bytes.ToUpper(b)) }
	for _, tc := range []struct {
		name, raw, want string
		edit            func(*Event)
	}{
		{"map data keeps framing", "event: s\r\ndata: ab\r\ndata:cd\r\n: c\r\n\r\n", "event: s\r\ndata: AB\r\ndata:CD\r\n: c\r\n\r\n", func(e *Event) { e.MapData(up) }},
		{"set data in place", "id: 1\ndata: old\nevent: e\n\n", "id: 1\ndata: n1\ndata: n2\nevent: e\n\n", func(e *Event) { e.SetData([]byte("n1\nn2")) }},
		{"set data when absent", "event: e\n\n", "event: e\ndata: d\n\n", func(e *Event) { e.SetData([]byte("d")) }},
		{"set field replaces all", "event: a\ndata: x\nevent: b\n\n", "event: c\ndata: x\n\n", func(e *Event) { e.SetField("event", "c") }},
		{"set field cuts line breaks", "data: x\r\n\r\n", "data: x\r\nid: 5\r\n\r\n", func(e *Event) { e.SetField("id", "5\r\nevent: evil") }},
		{"del field", "id: 1\ndata: x\n\n", "data: x\n\n", func(e *Event) { e.DelField("id") }},
	} {
		e := ParseEvent([]byte(tc.raw))
		tc.edit(e)
		if got := string(e.Bytes()); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream": true, "Text/Event-Stream; charset=utf-8": true,
		"application/json": false, "": false, "text/event-streams": false,
	} {
		if IsEventStream(ct) != want {
			t.Errorf("%q: want %v", ct, want)
		}
	}
}
