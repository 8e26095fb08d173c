package trim

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// ScorePoints is what a perfect quality score (1) is worth in tag points:
// see Priority.
const ScorePoints = 100

// Priority is a link's trim priority: ScorePoints × score plus the sum of
// the peer's tag values. The lowest priority is trimmed first.
func Priority(score float64, tags int) float64 {
	return ScorePoints*score + float64(tags)
}

// Candidate is one open link as the policy sees it.
type Candidate struct {
	Peer peer.ID
	// Priority orders the candidates: the lowest goes first (see
	// Priority).
	Priority float64
	Inbound  bool
	Opened   time.Time
	// Group is the link's network group (the manager uses its remote
	// /24, or /64 for IPv6): links of one group compete for
	// Policy.MaxPerGroup places.
	Group uint64
	// Keep marks a link never to close: a protected or persistent peer.
	Keep bool
}

// Policy says which links a trim closes; see the package documentation.
// The zero Policy closes every link it may.
type Policy struct {
	// Target is how many links may remain, besides those in their grace
	// period; a negative Target sets none (MaxInbound alone decides).
	Target int
	// MaxInbound is how many inbound links may remain, besides those in
	// their grace period; 0 or less sets no bound.
	MaxInbound int
	// MinOutbound: no outbound link is closed while this many or fewer
	// outbound links remain, those kept included.
	MinOutbound int
	// MaxPerGroup: the links of a group beyond this many go before any
	// other. 0 or less: groups make no difference.
	MaxPerGroup int
	// GracePeriod: a link opened less than this long ago is not closed,
	// nor counted against Target and MaxInbound.
	GracePeriod time.Duration
}

// item is a candidate with its sort keys side by side, so that sorting
// compares integers and moves small values rather than reaching back
// into the candidates.
type item struct {
	prio   uint64 // Priority's bits, ordered as the floats are
	rest   uint64 // inbound before outbound, then younger before older
	group  uint64
	idx    int32
	stays  bool // Keep, or in its grace period
	excess bool // beyond its group's places
}

func (it *item) inbound() bool { return it.rest>>63 == 0 }

// orderedBits maps a float64 to a uint64 that orders as the float does.
func orderedBits(f float64) uint64 {
	if f == 0 {
		f = 0 // −0 orders with +0
	}
	b := math.Float64bits(f)
	if b>>63 == 1 {
		return ^b
	}
	return b | 1<<63
}

// Victims appends to dst the indices in cands of the links to close, in
// the order to close them, and returns it. It costs O(n + k log n) for k
// links closed out of n (O(n log n) when network groups are crowded), and
// allocates one slice of n small items.
func (p Policy) Victims(now time.Time, cands []Candidate, dst []int) []int {
	// Links in their grace period do not count against the targets:
	// they are extra until they have had time to show what they are
	// worth, so a burst of newcomers cannot push out the links that
	// have (go-libp2p does the same). Kept links count.
	inbound, young, youngIn := 0, 0, 0
	for i := range cands {
		c := &cands[i]
		y := p.young(c, now)
		if y {
			young++
		}
		if c.Inbound {
			inbound++
			if y {
				youngIn++
			}
		}
	}
	outbound := len(cands) - inbound
	need, inNeed := 0, 0
	if p.Target >= 0 {
		need = len(cands) - young - p.Target
	}
	if p.MaxInbound > 0 {
		inNeed = inbound - youngIn - p.MaxInbound
	}
	if need <= 0 && inNeed <= 0 {
		return dst
	}
	items := make([]item, len(cands))
	for i := range cands {
		c := &cands[i]
		age := uint64(math.MaxInt64 - max(c.Opened.UnixNano(), 0)) // the younger, the smaller
		if !c.Inbound {
			age |= 1 << 63
		}
		items[i] = item{
			prio: orderedBits(c.Priority), rest: age, group: c.Group, idx: int32(i),
			stays: c.Keep || p.young(c, now),
		}
	}
	// The excess of crowded groups goes first, then the rest, each part
	// in order; the links that stay need no place in either.
	var excess, rest []item
	if p.MaxPerGroup > 0 {
		excess, rest = splitExcess(items, cands, p.MaxPerGroup)
	} else {
		rest = slices.DeleteFunc(items, func(it item) bool { return it.stays })
	}
	for _, part := range [2][]item{excess, rest} {
		// A heap, not a sort: a trim usually takes a few of many links,
		// and popping k of n costs O(n + k log n).
		h := orderHeap{items: part, cands: cands}
		h.init()
		for len(h.items) > 0 {
			if need <= 0 && inNeed <= 0 {
				return dst
			}
			it := h.pop()
			if it.inbound() {
				dst = append(dst, int(it.idx))
				need--
				inNeed--
				continue
			}
			if need <= 0 || outbound <= p.MinOutbound {
				continue // only inbound links are wanted, or the outbound floor is reached
			}
			dst = append(dst, int(it.idx))
			need--
			outbound--
		}
	}
	return dst
}

// young reports whether c is in its grace period at now (a kept link is
// not young: it stays for good, and counts).
func (p *Policy) young(c *Candidate, now time.Time) bool {
	return !c.Keep && p.GracePeriod > 0 && now.Sub(c.Opened) < p.GracePeriod
}

// orderHeap is a binary min-heap of items in trim order: lowest
// priority, then inbound before outbound, younger before older, then by
// peer ID.
type orderHeap struct {
	items []item
	cands []Candidate
}

func (h *orderHeap) less(i, j int) bool {
	a, b := &h.items[i], &h.items[j]
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	if a.rest != b.rest {
		return a.rest < b.rest
	}
	return h.cands[a.idx].Peer.Less(h.cands[b.idx].Peer)
}

func (h *orderHeap) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *orderHeap) pop() item {
	n := len(h.items) - 1
	h.items[0], h.items[n] = h.items[n], h.items[0]
	it := h.items[n]
	h.items = h.items[:n]
	h.down(0)
	return it
}

func (h *orderHeap) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			return
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		i = j
	}
}

// splitExcess reorders items into the excess of each group (the items
// beyond its first max places: the links that stay anyway take places
// first, then the highest priorities, then the oldest links) and the
// rest, dropping the items that stay. Only groups with more than max
// members are ranked.
func splitExcess(items []item, cands []Candidate, max int) (excess, rest []item) {
	size := make(map[uint64]int32)
	for i := range items {
		size[items[i].group]++
	}
	// Crowded groups' members to the front, ranked within their group.
	crowded := 0
	for i := range items {
		if size[items[i].group] > int32(max) {
			items[crowded], items[i] = items[i], items[crowded]
			crowded++
		}
	}
	slices.SortFunc(items[:crowded], func(x, y item) int {
		if c := cmp.Compare(x.group, y.group); c != 0 {
			return c
		}
		if x.stays != y.stays {
			if x.stays {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(y.prio, x.prio); c != 0 {
			return c
		}
		if c := cmp.Compare(y.rest&^(1<<63), x.rest&^(1<<63)); c != 0 { // older first
			return c
		}
		return cands[x.idx].Peer.Compare(cands[y.idx].Peer)
	})
	// Move each crowded group's excess to the front, then drop the items
	// that stay from what follows.
	rank := 0
	for i := range crowded {
		if i > 0 && items[i-1].group != items[i].group {
			rank = 0
		}
		items[i].excess = rank >= max && !items[i].stays
		rank++
	}
	n := 0
	for i := range crowded {
		if items[i].excess {
			items[n], items[i] = items[i], items[n]
			n++
		}
	}
	rest = slices.DeleteFunc(items[n:], func(it item) bool { return it.stays })
	return items[:n], rest
}

// Watermarks trigger trims: past High links, trim down to Low, at most
// once per Silence. High 0 or less: no watermarks.
type Watermarks struct {
	High, Low int
	Silence   time.Duration
}

// Over reports whether n links call for a trim.
func (w Watermarks) Over(n int) bool { return w.High > 0 && n > w.High }

// Due reports whether a trim may start at now when the last one started
// at last (the zero time: never); if not, wait is how long until one may.
func (w Watermarks) Due(now, last time.Time) (ok bool, wait time.Duration) {
	if last.IsZero() || w.Silence <= 0 {
		return true, 0
	}
	if d := last.Add(w.Silence).Sub(now); d > 0 {
		return false, d
	}
	return true, 0
}

// Admit reports whether a new inbound link may join n links (those open
// and those admitted on their way in) at now, when the last trim started
// at last. Below High it may. At High it may only if a trim may start at
// once, which its arrival then starts: so a burst of arrivals passes High
// by one link at most, and none while the count is above High.
func (w Watermarks) Admit(n int, now, last time.Time) bool {
	if w.High <= 0 || n < w.High {
		return true
	}
	if n > w.High {
		return false
	}
	ok, _ := w.Due(now, last)
	return ok
}
