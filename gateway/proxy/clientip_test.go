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

// addrCounter is a connection whose address reads are counted.
type addrCounter struct {
	addr  net.Addr
	reads int
}

func (a *addrCounter) RemoteAddr() net.Addr { a.reads++; return a.addr }

func TestClientIPsPerConnection(t *testing.T) {
	var c clientIPs
	a := &addrCounter{addr: &net.TCPAddr{IP: net.IPv4(10, 0, 200, 7), Port: 1}}
	b := &addrCounter{addr: &net.TCPAddr{IP: net.IPv4(192, 168, 1, 99).To4(), Port: 2}}
	v6 := &addrCounter{addr: &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 3}}
	const idA, idB, idV6 = 5, 5 + clientIPSlots, 6 // A and B share a slot
	steps := []struct {
		id        uint64
		conn      *addrCounter
		want      string
		wantReads int
	}{
		{idA, a, "10.0.200.7", 1},
		{idA, a, "10.0.200.7", 1}, // cached
		{idB, b, "192.168.1.99", 1},
		{idA, a, "10.0.200.7", 2}, // B took the slot: read again
		{idA, a, "10.0.200.7", 2},
		{idV6, v6, "2001:db8::7", 1},
		{idV6, v6, "2001:db8::7", 2}, // IPv6 is not cached
	}
	for i, s := range steps {
		got := string(c.appendIP([]byte("x, "), s.id, s.conn))
		if got != "x, "+s.want || s.conn.reads != s.wantReads {
			t.Fatalf("step %d: got %q after %d address reads, want %q after %d", i, got, s.conn.reads, "x, "+s.want, s.wantReads)
		}
	}
}

func TestAppendIPv4(t *testing.T) {
	for _, ip := range []net.IP{{0, 0, 0, 0}, {255, 255, 255, 255}, {1, 10, 100, 109}, {9, 99, 199, 250}} {
		v := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
		if got := string(appendIPv4(nil, v)); got != ip.String() {
			t.Errorf("appendIPv4(%v) = %q", ip, got)
		}
	}
}

func BenchmarkClientIPsCached(b *testing.B) {
	var c clientIPs
	conn := &addrCounter{addr: &net.TCPAddr{IP: net.IPv4(192, 168, 10, 7), Port: 50000}}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.appendIP(buf[:0], 42, conn)
	}
}
