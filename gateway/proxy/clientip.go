package proxy

import (
	"net"
	"sync/atomic"
)

// clientIPs remembers the IPv4 address of each client connection fasthttp
// serves, for X-Forwarded-For. Reading it from the connection walks
// conn -> fd -> address -> IP bytes, pointers into memory a keep-alive
// connection touches nowhere else per request, so it was a cache miss or
// two on every request; a slot here is one word in a small, hot table.
//
// Slots are direct-mapped by fasthttp's connection id and hold a tag of the
// id, a valid bit and the address in one word, so a connection never takes
// another one's address (it reads its own from the connection instead).
// IPv6 clients are not cached.
type clientIPs struct {
	slots [clientIPSlots]atomic.Uint64
}

const (
	clientIPSlots = 4096 // a power of two
	clientIPValid = 1 << 31
)

// remoteAddrer is what appendIP needs of a fasthttp.RequestCtx.
type remoteAddrer interface{ RemoteAddr() net.Addr }

// appendIP appends the IPv4 address of connection id, from its slot or
// else from conn's address (then cached), or the textual address of any
// other client.
func (c *clientIPs) appendIP(dst []byte, id uint64, conn remoteAddrer) []byte {
	slot := &c.slots[id&(clientIPSlots-1)]
	tag := uint64(uint32(id/clientIPSlots)|clientIPValid) << 32
	if v := slot.Load(); v&^0xffffffff == tag {
		return appendIPv4(dst, uint32(v))
	}
	a := conn.RemoteAddr()
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip4 := ta.IP.To4(); ip4 != nil {
			v := uint32(ip4[0])<<24 | uint32(ip4[1])<<16 | uint32(ip4[2])<<8 | uint32(ip4[3])
			slot.Store(tag | uint64(v))
			return appendIPv4(dst, v)
		}
	}
	return appendClientIP(dst, a)
}

// appendIPv4 appends ip (big-endian) in dotted decimal.
func appendIPv4(dst []byte, ip uint32) []byte {
	for shift := 24; shift >= 0; shift -= 8 {
		b := byte(ip >> shift)
		switch {
		case b >= 100:
			dst = append(dst, '0'+b/100, '0'+b/10%10, '0'+b%10)
		case b >= 10:
			dst = append(dst, '0'+b/10, '0'+b%10)
		default:
			dst = append(dst, '0'+b)
		}
		if shift > 0 {
			dst = append(dst, '.')
		}
	}
	return dst
}
