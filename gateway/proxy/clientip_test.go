package proxy

import (
	"net"
	"testing"
)

func TestAppendClientIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, "127.0.0.1"},
		{&net.TCPAddr{IP: net.IPv4(0, 9, 10, 255), Port: 1}, "0.9.10.255"},
		{&net.TCPAddr{IP: net.IPv4(199, 99, 100, 200).To4(), Port: 1}, "199.99.100.200"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, "10.1.2.3"},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, ""},
		{nil, ""},
	} {
		if got := string(appendClientIP([]byte("x"), tc.addr)); got != "x"+tc.want {
			t.Errorf("appendClientIP(%v) = %q, want %q", tc.addr, got, "x"+tc.want)
		}
	}
}

func BenchmarkAppendClientIP(b *testing.B) {
	addr := &net.TCPAddr{IP: net.IPv4(192, 168, 10, 7), Port: 50000}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendClientIP(buf[:0], addr)
	}
}
