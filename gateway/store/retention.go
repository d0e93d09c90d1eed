package store

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// retentionChunk bounds how many sessions one retention batch deletes, so
// the writer lock is never held for long.
const retentionChunk = 256

// ExpireIdle deletes every session whose last activity is before cutoff
// and returns how many it deleted.
func (s *Store) ExpireIdle(cutoff time.Time) (int, error) {
	total := 0
	from := []byte{prefixStart}
	for {
		ids, resume, err := s.oldestSessions(from, cutoff.UnixNano(), retentionChunk)
		if err != nil {
			return total, err
		}
		n, err := s.deleteIf(ids, func(m sessionMeta) bool { return m.LastActivity < cutoff.UnixNano() })
		total += n
		if err != nil {
			return total, err
		}
		if resume == nil {
			s.expired.WithLabelValues("age").Add(float64(total))
			return total, nil
		}
		from = resume
	}
}

// oldestSessions returns up to max session ids from the start index at or
// after key from that started before startBefore, and where to resume (nil
// when done).
func (s *Store) oldestSessions(from []byte, startBefore int64, max int) ([]string, []byte, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: startKey(nil, startBefore, "")})
	if err != nil {
		return nil, nil, fmt.Errorf("retention: %w", err)
	}
	defer it.Close()
	var ids []string
	for ok := it.First(); ok; ok = it.Next() {
		if len(ids) == max {
			return ids, append([]byte(nil), it.Key()...), nil
		}
		_, id, err := parseStartKey(it.Key())
		if err != nil {
			return nil, nil, fmt.Errorf("retention: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil, it.Error()
}

// deleteIf deletes, in one batch, the sessions among ids for whose
// metadata del returns true.
func (s *Store) deleteIf(ids []string, del func(sessionMeta) bool) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	var gone []string
	for _, id := range ids {
		m, found, err := s.getMeta(id)
		if err != nil {
			return 0, err
		}
		if st, ok := s.sessions[id]; ok && st.dirty {
			m = st.meta // the record lags (metaInterval)
		}
		if !found || !del(m) {
			continue
		}
		if _, err := s.deleteLocked(b, id); err != nil {
			return 0, err
		}
		gone = append(gone, id)
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := s.db.Apply(b, pebble.NoSync); err != nil {
		return 0, fmt.Errorf("retention: delete %d sessions: %w", len(gone), err)
	}
	for _, id := range gone {
		s.forgetLocked(id)
	}
	return len(gone), nil
}

// LiveBytes sums the encoded size of every recorded event.
func (s *Store) LiveBytes() (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta}, UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var total uint64
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		m, err := decodeMeta(v)
		if err != nil {
			return 0, fmt.Errorf("session %q: %w", it.Key()[1:], err)
		}
		total += m.Bytes
	}
	return total, it.Error()
}

// EnforceMaxBytes deletes the oldest sessions while the live event bytes
// exceed maxBytes, down to 90% of it. It returns how many it deleted.
func (s *Store) EnforceMaxBytes(maxBytes int64) (int, error) {
	live, err := s.LiveBytes()
	if err != nil {
		return 0, fmt.Errorf("size cap: %w", err)
	}
	s.live.Set(float64(live))
	if maxBytes <= 0 || live <= uint64(maxBytes) {
		return 0, nil
	}
	target := uint64(maxBytes) / 10 * 9
	total := 0
	from := []byte{prefixStart}
	for live > target {
		ids, resume, err := s.oldestSessions(from, 1<<63-1, retentionChunk)
		if err != nil {
			return total, err
		}
		var pick []string
		for _, id := range ids {
			if live <= target {
				break
			}
			m, found, err := s.getMeta(id)
			if err != nil {
				return total, err
			}
			if found {
				pick = append(pick, id)
				live -= min(live, m.Bytes)
			}
		}
		n, err := s.deleteIf(pick, func(sessionMeta) bool { return true })
		total += n
		if err != nil {
			return total, err
		}
		if resume == nil {
			break
		}
		from = resume
	}
	s.expired.WithLabelValues("size").Add(float64(total))
	s.live.Set(float64(live))
	return total, nil
}

// RunRetention applies retention (0: keep forever) and the size cap (0: no
// cap) every interval until ctx is done.
func (s *Store) RunRetention(ctx context.Context, interval, retention time.Duration, maxBytes int64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if retention > 0 {
			if n, err := s.ExpireIdle(time.Now().Add(-retention)); err != nil {
				s.log.Error("retention by age failed", "err", err)
			} else if n > 0 {
				s.log.Info("retention deleted idle sessions", "sessions", n, "retention", retention)
			}
		}
		if n, err := s.EnforceMaxBytes(maxBytes); err != nil {
			s.log.Error("retention by size failed", "err", err)
		} else if n > 0 {
			s.log.Info("size cap deleted oldest sessions", "sessions", n, "max_bytes", maxBytes)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
