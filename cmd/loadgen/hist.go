package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram: exact below 128 ns, then 64
// buckets per power of two (under 1.6% error), up to about 18 minutes. It
// has a fixed size, so recording never allocates.
type hist struct {
	counts [64 * 36]uint64
	n      uint64
	max    int64
}

func (h *hist) add(d time.Duration) {
	ns := max(int64(d), 0)
	h.n++
	h.max = max(h.max, ns)
	h.counts[min(bucket(ns), len(h.counts)-1)]++
}

func bucket(ns int64) int {
	if ns < 128 {
		return int(ns)
	}
	e := bits.Len64(uint64(ns)) - 7
	return 64*e + int(ns>>e)
}

// lowerBound is the smallest value in bucket i.
func lowerBound(i int) int64 {
	if i < 128 {
		return int64(i)
	}
	e := i/64 - 1
	return int64(i%64+64) << e
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value below which a fraction q of the samples lie
// (the bucket's midpoint).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			lo := lowerBound(i)
			hi := lowerBound(i + 1)
			return time.Duration(min((lo+hi)/2, h.max))
		}
	}
	return time.Duration(h.max)
}
