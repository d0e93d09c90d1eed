package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxSessionIDLen is the longest session id the store records; events of
// longer ids are rejected by Record.
const MaxSessionIDLen = 1024

// maxIndexPart bounds the stream name and SSE id that go into an index
// key; an SSE event whose id or stream is longer is recorded but cannot be
// resumed from.
const maxIndexPart = 1024

const (
	prefixEvent    = 'e'
	prefixMeta     = 'm'
	prefixStart    = 's'
	prefixSSEID    = 'i'
	keyVersion     = "v"
	layoutVersion  = "wasmgate-store/2" // 2: event runs (encodingRun)
	layoutVersion1 = "wasmgate-store/1"
)

func appendSessionPrefix(dst []byte, prefix byte, session string) []byte {
	dst = append(dst, prefix)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(session)))
	return append(dst, session...)
}

func eventKey(dst []byte, session string, seq uint64) []byte {
	dst = appendSessionPrefix(dst, prefixEvent, session)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// eventBytes is the size an event of session with a v1 value of encLen
// bytes counts for in its session's metadata: its own key and value. (An
// event in a run shares the run's key, so the store holds a little less.)
func eventBytes(session string, encLen int) uint64 {
	return uint64(1 + 2 + len(session) + 8 + encLen)
}

// runFloor is the lowest key seq whose run can hold seq. A reader that
// needs the events from seq on starts there and skips what it does not
// need: a run usually starts at or below seq, and a batch retried after a
// commit that did land (but reported failure) may have written the same
// events again, grouped differently, so the last key below seq is not
// enough.
func runFloor(seq uint64) uint64 {
	return seq - min(seq, maxRunEvents-1)
}

// parseEventKey returns the session and seq of an "e" key.
func parseEventKey(k []byte) (string, uint64, error) {
	if len(k) < 3 || k[0] != prefixEvent {
		return "", 0, errors.New("not an event key")
	}
	n := int(binary.BigEndian.Uint16(k[1:3]))
	if len(k) != 3+n+8 {
		return "", 0, fmt.Errorf("event key of %d bytes for a %d-byte session id", len(k), n)
	}
	return string(k[3 : 3+n]), binary.BigEndian.Uint64(k[3+n:]), nil
}

func metaKey(dst []byte, session string) []byte {
	dst = append(dst, prefixMeta)
	return append(dst, session...)
}

func startKey(dst []byte, startNanos int64, session string) []byte {
	dst = append(dst, prefixStart)
	dst = binary.BigEndian.AppendUint64(dst, uint64(startNanos))
	return append(dst, session...)
}

func parseStartKey(k []byte) (int64, string, error) {
	if len(k) < 9 || k[0] != prefixStart {
		return 0, "", errors.New("not a session index key")
	}
	return int64(binary.BigEndian.Uint64(k[1:9])), string(k[9:]), nil
}

func sseKey(dst []byte, session, stream, id string) []byte {
	dst = appendSessionPrefix(dst, prefixSSEID, session)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(stream)))
	dst = append(dst, stream...)
	return append(dst, id...)
}

// prefixEnd returns the smallest key greater than every key that starts
// with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
