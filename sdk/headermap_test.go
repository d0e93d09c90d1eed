package sdk

import (
	"bytes"
	"reflect"
	"testing"
)

func TestHeaderMapSpecExample(t *testing.T) {
	// The example of the ABI specification: {"a": "1"}, {"b": "22"}.
	want := []byte{2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0,
		'a', 0, '1', 0, 'b', 0, '2', '2', 0}
	got := EncodeHeaders([]Header{{"a", "1"}, {"b", "22"}})
	if !bytes.Equal(got, want) {
		t.Fatalf("encode: %v\nwant    %v", got, want)
	}
}

func TestHeaderMapRoundTrip(t *testing.T) {
	for _, h := range [][]Header{
		{{":method", "GET"}, {":path", "/a?b=c"}},
		{{"empty", ""}, {"", "no-name"}},
		{{"dup", "1"}, {"dup", "2"}, {"x-ünï", "çødé"}},
	} {
		got, err := DecodeHeaders(EncodeHeaders(h))
		if err != nil || !reflect.DeepEqual(got, h) {
			t.Fatalf("round trip %v: %v %v", h, got, err)
		}
	}
}

func TestHeaderMapDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty", nil, true},
		{"single NUL", []byte{0}, true},
		{"short count", []byte{1, 0}, false},
		{"count past size", []byte{9, 0, 0, 0, 1, 0, 0, 0}, false},
		{"pair overruns", []byte{1, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 'a', 0}, false},
		{"huge lengths", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, false},
	} {
		_, err := DecodeHeaders(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
