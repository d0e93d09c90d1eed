// Package store records session events durably in Pebble and reads them
// back: the admin API and CLI list and export sessions, and SSE resume
// replays the events a client missed. It is the only package that imports
// Pebble.
//
// # Writing
//
// The proxy never waits on the disk. A [Worker] is the [event.Sink]: Record
// puts the event on a bounded queue (waiting at most the enqueue timeout,
// then shedding with a counter) and one goroutine drains it in batches,
// writing each batch as ONE Pebble batch (synced by default, so an
// acknowledged event survives kill -9). Synced commits are pipelined and
// their log syncs grouped (Options.MinSyncInterval, WorkerOptions.SyncDepth):
// a sync is worth more CPU than writing a batch, and batches written while
// one is pending share the next. A batch that fails to commit or to sync is
// not lost: each of its events goes to a retry heap ordered by due time
// with exponential backoff and a per-event attempt count; an event that
// runs out of attempts is counted and logged as exhausted.
//
// Sequence numbers are assigned by the worker at the event's first commit
// attempt: per session, starting at 1, strictly increasing. A session's
// metadata record (start, last activity, highest number handed out, event
// and byte counts) is written with its first batch, with its end and with
// a retry of its events, and otherwise at most once a second while it is
// active (a third fewer keys per request; the memtable insert is most of a
// commit's CPU). Readers and the writer add the events stored past the
// record's last number, so after a crash numbering continues above
// anything on disk and the counts are whole (recovered lazily, on the
// session's first event or read). A number handed out to an event whose
// batch then never committed leaves a gap.
//
// # Key layout
//
// All integers are big-endian so that byte order is numeric order. A
// session id is 1 to [MaxSessionIDLen] bytes of anything; len16 is its
// length as a uint16, which keeps one session's keys contiguous whatever
// bytes the id holds.
//
//	"e" len16 session seq64             → encoded event, or a run of the
//	                                      events seq64, seq64+1, ... (below)
//	"m" session                         → session metadata (start, last
//	                                      activity, last seq, events, bytes)
//	"s" startNanos64 session            → empty: sessions by start time, the
//	                                      index the admin API pages newest-first
//	"i" len16 session len16 stream id   → seq64 of the last event recorded
//	                                      with that SSE id on that stream
//	"v"                                 → layout version of the store
//
// One session reads back with one range scan over its "e" keys and is
// deleted with range deletes over its "e" and "i" keys plus two point
// deletes.
//
// # Event encoding
//
// A value starts with a format version byte (1) and the event type, then the
// time as a zig-zag varint of Unix nanoseconds, then a uvarint bitmap of the
// fields present, then each present field in bit order: strings and byte
// slices as uvarint length + bytes, integers as zig-zag varints, headers as
// a uvarint count of name/value pairs, where a common name is the uvarint
// of its index in a fixed table and a value equal to the request id (the
// X-Request-Id the gateway adds) is one byte: header names were a third of
// a recorded exchange. Session and Seq come from the key. Zero fields take
// no space, so a typical SSE event is its data plus a few dozen bytes. A
// decoder rejects an unknown version or field bit rather than guess.
//
// A run (first byte 2) holds consecutive events of one session written by
// one batch: a uvarint count, then each event's value as above, prefixed by
// its uvarint length; at most 64 events and 32 KiB. The worker writes each
// session's events in a batch as one run because the memtable insert, most
// of it a skiplist search whose cache misses grow with the number of
// sessions, is the largest CPU cost of a commit; see
// WorkerOptions.ExchangeWindow for how a request and its response come to
// share a batch. Readers start a run's length below the first number they
// need and skip numbers they have passed, so a batch rewritten by a retry,
// grouped differently, reads back once. Layout 2 added runs; a layout 1
// store opens and is marked 2.
//
// # Retention
//
// A session is deleted once its last activity is older than
// storage.retention; when the live data passes storage.max_bytes the oldest
// sessions (by start) are deleted until it is under 90% of the cap. Deleted
// space returns to the file system as Pebble compacts.
package store
