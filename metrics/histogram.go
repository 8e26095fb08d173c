package metrics

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Bucket layout (log-linear, like HdrHistogram with 64 sub-buckets).
//
// Values are nanoseconds (uint64; negative durations count as 0).
// Group 0 holds 0..63 ns in 64 buckets one nanosecond wide. Group g ≥ 1
// holds [2^(g+5), 2^(g+6)) ns in 64 buckets each 2^(g−1) ns wide; group 1
// (64..127 ns) is still exact. 59 groups cover every uint64, so no value
// is ever clamped. A bucket of group g ≥ 1 starts at (64+j)·2^(g−1), so
// its width is at most 1/64 of its lower bound, and its midpoint is
// within 1/128 (0.78 %) of any value in it.
//
// A group's 64 counters (512 bytes) are allocated the first time a value
// falls in it, so a histogram whose values span a few powers of two
// (round trips from 10 to 200 ms span 5) costs about 3 KB, not 30.
const (
	subBits   = 6
	subCount  = 1 << subBits // buckets per group
	numGroups = 64 - subBits + 1
)

type group [subCount]atomic.Uint64

// bucketOf returns the group and sub-bucket of v.
func bucketOf(v uint64) (g, s int) {
	if v < subCount {
		return 0, int(v)
	}
	g = bits.Len64(v) - subBits
	return g, int(v>>(g-1)) & (subCount - 1)
}

// bucketBounds returns the lowest value of bucket index i (g·64+s) and
// its width.
func bucketBounds(i uint32) (lo, width uint64) {
	g, s := int(i/subCount), uint64(i%subCount)
	if g == 0 {
		return s, 1
	}
	return (subCount + s) << (g - 1), 1 << (g - 1)
}

// bucketValue returns the value that stands for bucket index i: the
// midpoint of the integers in it.
func bucketValue(i uint32) float64 {
	lo, w := bucketBounds(i)
	return float64(lo) + float64(w-1)/2
}

// Histogram records durations into log-linear buckets with a relative
// error of at most 1/128 (0.78 %) at any magnitude, from 1 ns to the
// largest time.Duration. The zero value is ready to use. Record is
// lock-free and does not allocate except the first time a power-of-two
// range is used. See the package documentation for the concurrency
// contract of each method.
type Histogram struct {
	groups [numGroups]atomic.Pointer[group]
	sum    atomic.Uint64 // nanoseconds
	max    atomic.Uint64
	minInv atomic.Uint64 // ^min, so that the zero value means "no minimum yet"
}

func (h *Histogram) group(g int) *group {
	if p := h.groups[g].Load(); p != nil {
		return p
	}
	p := new(group)
	if h.groups[g].CompareAndSwap(nil, p) {
		return p
	}
	return h.groups[g].Load()
}

// Record adds one observation of d. A negative d counts as 0.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	g, s := bucketOf(v)
	p := h.groups[g].Load()
	if p == nil {
		p = h.group(g)
	}
	p[s].Add(1)
	h.sum.Add(v)
	h.raise(v)
}

// raise moves the maximum and minimum to take in v.
func (h *Histogram) raise(v uint64) {
	for m := h.max.Load(); v > m; m = h.max.Load() {
		if h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for inv, m := ^v, h.minInv.Load(); inv > m; m = h.minInv.Load() {
		if h.minInv.CompareAndSwap(m, inv) {
			break
		}
	}
}

// Merge adds the observations of other into h. Other is read as by
// Snapshot; merging h into itself is a no-op.
func (h *Histogram) Merge(other *Histogram) {
	if other == h || other == nil {
		return
	}
	added := false
	for g := range other.groups {
		op := other.groups[g].Load()
		if op == nil {
			continue
		}
		var p *group
		for s := range op {
			n := op[s].Load()
			if n == 0 {
				continue
			}
			if p == nil {
				p = h.group(g)
			}
			p[s].Add(n)
			added = true
		}
	}
	if !added {
		return
	}
	h.sum.Add(other.sum.Load())
	h.raise(other.max.Load())
	h.raise(^other.minInv.Load())
}

// Reset discards every observation, keeping the allocated groups. It is
// not atomic with respect to concurrent Records (see the package
// documentation).
func (h *Histogram) Reset() {
	for g := range h.groups {
		if p := h.groups[g].Load(); p != nil {
			for s := range p {
				p[s].Store(0)
			}
		}
	}
	h.sum.Store(0)
	h.max.Store(0)
	h.minInv.Store(0)
}

// Snapshot returns a copy of h's state. It allocates one slice sized
// to the non-empty buckets (16 bytes each); SnapshotInto reuses one.
func (h *Histogram) Snapshot() HistogramSnapshot {
	// Size the storage in a first pass; records racing with the copy
	// may still make append grow it.
	need := h.nonEmpty()
	s := HistogramSnapshot{buckets: make([]bucketCount, 0, need+need/8)}
	h.SnapshotInto(&s)
	return s
}

// SnapshotInto overwrites s with h's state, reusing s's bucket storage:
// in a loop over many histograms with one HistogramSnapshot per
// histogram kept between rounds, it does not allocate once the storage
// has grown.
func (h *Histogram) SnapshotInto(s *HistogramSnapshot) {
	b := s.buckets[:0]
	var count uint64
	for g := range h.groups {
		p := h.groups[g].Load()
		if p == nil {
			continue
		}
		for j := range p {
			if n := p[j].Load(); n != 0 {
				b = append(b, bucketCount{idx: uint32(g*subCount + j), n: n})
				count += n
			}
		}
	}
	*s = HistogramSnapshot{Count: count, buckets: b}
	if count == 0 {
		return
	}
	// Records racing with the snapshot can leave min and max out of step
	// with the buckets read; keep them inside the end buckets.
	mn, mx := ^h.minInv.Load(), h.max.Load()
	lo, w := bucketBounds(b[0].idx)
	if mn < lo || mn > lo+w-1 {
		mn = lo
	}
	lo, w = bucketBounds(b[len(b)-1].idx)
	if mx < lo || mx > lo+w-1 {
		mx = lo + w - 1
	}
	s.Sum = durationOf(h.sum.Load())
	s.Min, s.Max = durationOf(mn), durationOf(mx)
}

// nonEmpty returns the number of non-empty buckets.
func (h *Histogram) nonEmpty() int {
	n := 0
	for g := range h.groups {
		if p := h.groups[g].Load(); p != nil {
			for j := range p {
				if p[j].Load() != 0 {
					n++
				}
			}
		}
	}
	return n
}

func durationOf(v uint64) time.Duration {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(v)
}

type bucketCount struct {
	idx uint32 // g·64 + s
	n   uint64
}

// HistogramSnapshot is a copy of a Histogram's state: totals and the
// non-empty buckets, in order. Its cost is proportional to the number of
// non-empty buckets (16 bytes each), not to the layout.
type HistogramSnapshot struct {
	Count uint64        // observations
	Sum   time.Duration // of the observations; saturates at the largest Duration
	Min   time.Duration // 0 if Count is 0
	Max   time.Duration // 0 if Count is 0

	buckets []bucketCount
}

// Mean returns Sum/Count, 0 if Count is 0.
func (s *HistogramSnapshot) Mean() time.Duration {
	if s.Count == 0 {
		return 0
	}
	return time.Duration(float64(s.Sum) / float64(s.Count))
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by the nearest-rank
// method: the value of the ceil(q·Count)-th smallest observation, to
// within 0.78 %. Quantile(0) is Min and Quantile(1) is Max, exactly. It
// returns 0 if Count is 0.
func (s *HistogramSnapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	if q <= 0 || math.IsNaN(q) {
		return s.Min
	}
	if q >= 1 {
		return s.Max
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	rank = max(rank, 1)
	var cum uint64
	for _, b := range s.buckets {
		cum += b.n
		if cum >= rank {
			v := time.Duration(bucketValue(b.idx))
			return min(max(v, s.Min), s.Max)
		}
	}
	return s.Max
}

// CumulativeCounts returns, for each upper bound in bounds (which must
// be ascending), the number of observations ≤ that bound, appended to
// dst[:0]: the cumulative buckets of a Prometheus histogram, whose
// +Inf bucket is Count and whose sum is Sum. An observation is compared
// by its bucket's midpoint, so observations within 0.78 % of a bound
// may be counted on either side of it.
func (s *HistogramSnapshot) CumulativeCounts(bounds []time.Duration, dst []uint64) []uint64 {
	dst = dst[:0]
	var cum uint64
	i := 0
	for _, ub := range bounds {
		for i < len(s.buckets) && bucketValue(s.buckets[i].idx) <= float64(ub) {
			cum += s.buckets[i].n
			i++
		}
		dst = append(dst, cum)
	}
	return dst
}

// Merge adds the observations of o into s, as if both had been recorded
// into one histogram. It allocates a new bucket slice.
func (s *HistogramSnapshot) Merge(o *HistogramSnapshot) {
	if o.Count == 0 {
		return
	}
	if s.Count == 0 {
		*s = HistogramSnapshot{Count: o.Count, Sum: o.Sum, Min: o.Min, Max: o.Max,
			buckets: append([]bucketCount(nil), o.buckets...)}
		return
	}
	out := make([]bucketCount, 0, len(s.buckets)+len(o.buckets))
	a, b := s.buckets, o.buckets
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].idx < b[0].idx:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0].idx < a[0].idx:
			out, b = append(out, b[0]), b[1:]
		default:
			out = append(out, bucketCount{idx: a[0].idx, n: a[0].n + b[0].n})
			a, b = a[1:], b[1:]
		}
	}
	s.buckets = out
	s.Count += o.Count
	s.Sum += o.Sum
	s.Min = min(s.Min, o.Min)
	s.Max = max(s.Max, o.Max)
}

// Sub returns the observations in s that are not in prev, an earlier
// snapshot of the same histogram (with no Reset between): the
// histogram of a window. Buckets, Count and Sum are exact; Min and Max,
// which the difference does not keep, are the bounds of the lowest and
// highest non-empty buckets (within 1/64 of the true values).
func (s *HistogramSnapshot) Sub(prev *HistogramSnapshot) HistogramSnapshot {
	var out HistogramSnapshot
	a, b := s.buckets, prev.buckets
	for len(a) > 0 {
		n := a[0].n
		for len(b) > 0 && b[0].idx < a[0].idx {
			b = b[1:]
		}
		if len(b) > 0 && b[0].idx == a[0].idx {
			n -= min(n, b[0].n)
			b = b[1:]
		}
		if n != 0 {
			out.buckets = append(out.buckets, bucketCount{idx: a[0].idx, n: n})
			out.Count += n
		}
		a = a[1:]
	}
	if out.Count == 0 {
		return out
	}
	out.Sum = max(s.Sum-prev.Sum, 0)
	lo, _ := bucketBounds(out.buckets[0].idx)
	hlo, hw := bucketBounds(out.buckets[len(out.buckets)-1].idx)
	out.Min = max(durationOf(lo), s.Min)
	out.Max = min(durationOf(hlo+hw-1), s.Max)
	return out
}
