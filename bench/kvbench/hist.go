package main

// A log-linear latency histogram in the HdrHistogram style: values (in
// nanoseconds) below 2*subBuckets are counted exactly; above, every power
// of two is cut into subBuckets equal buckets, so a bucket's width is at
// most 1/subBuckets of its lower bound. Every operation is recorded (no
// sampling); percentiles are the midpoint of the bucket that holds the
// rank, within 1/(2*subBuckets) = 0.4% of the true value; max, min and
// mean are exact. One histogram per goroutine and op type, merged at the
// end, so recording takes no lock.

import (
	"math"
	"math/bits"
)

const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits // 128
	// Exponents up to 2^47 ns (39 hours) are enough for any latency here.
	histBuckets = 2*subBuckets + (47-subBucketBits-1)*subBuckets
)

// Hist counts values in log-linear buckets.
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    uint64
	max    uint64
}

// bucketOf maps a value to its bucket index.
func bucketOf(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - (subBucketBits + 1) // v>>e is in [128, 256)
	i := e*subBuckets + int(v>>uint(e))
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketRange is the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < 2*subBuckets {
		return uint64(i), 1
	}
	e := i/subBuckets - 1
	m := uint64(i - e*subBuckets) // in [128, 256)
	return m << uint(e), 1 << uint(e)
}

// Record counts one value (nanoseconds).
func (h *Hist) Record(v uint64) {
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of values recorded.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest value recorded (exact).
func (h *Hist) Max() uint64 { return h.max }

// Mean is the exact mean (0 when empty).
func (h *Hist) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Percentile returns the value at percentile p (0 < p <= 100): the
// midpoint of the bucket holding the ceil(p/100*n)-th smallest value,
// clamped to [min, max]. 0 when empty.
func (h *Hist) Percentile(p float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			v := float64(lo) + float64(w-1)/2
			if v < float64(h.min) {
				v = float64(h.min)
			}
			if v > float64(h.max) {
				v = float64(h.max)
			}
			return v
		}
	}
	return float64(h.max)
}
