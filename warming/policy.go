package warming

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate and New.
var ErrInvalidConfig = errors.New("warming: invalid config")

// Defaults of DefaultConfig.
const (
	DefaultExploreShare   = 0.25
	DefaultScaleThreshold = 0.8
	DefaultStickiness     = 0.05
	DefaultMaxConcurrent  = 16
	DefaultRetryInitial   = time.Second
	DefaultRetryMax       = time.Minute
)

// Config is the policy's configuration. Unlike the manager's config, a
// zero field here means zero; start from DefaultConfig.
type Config struct {
	// MinWarm is how many peers to keep warm (the kept set); 0 keeps
	// none.
	MinWarm int
	// ExploreShare is the share of the kept slots given to peers never
	// tried, in [0, 1]: MinWarm × ExploreShare slots, the fractional part
	// drawn at random each round (0.25: one slot in four).
	ExploreShare float64
	// MaxExtra bounds the extra peers warmed for preemptive scaling;
	// 0 turns scaling off. Every peer the policy chose that is warm or
	// warming but not in the kept set counts as one (a kept peer that
	// lost its slot too), until it goes cold.
	MaxExtra int
	// ScaleThreshold is the stream utilisation, in (0, 1], past which
	// extras are warmed (0.8). Read only when MaxExtra > 0.
	ScaleThreshold float64
	// Stickiness is added to the score of a peer already warm or warming
	// when ranking (0.05), so that noise in the scores does not make the
	// kept set churn and a link already there wins over a new dial.
	Stickiness float64
	// MaxConcurrent bounds the attempts under way at once (16); 0 sets
	// no bound.
	MaxConcurrent int
	// RetryInitial and RetryMax space the attempts on a peer whose
	// attempts failed: it is retried RetryInitial after its first failure
	// in a row, twice as long after each next one, at most RetryMax after
	// the last (1 s, 1 min: the manager's Backoff).
	RetryInitial, RetryMax time.Duration
}

// DefaultConfig returns the defaults: no peer kept warm, one slot in four
// for exploration, no scaling (threshold 0.8 once MaxExtra is set),
// stickiness 0.05, 16 attempts at once, retries from 1 s to 1 min.
func DefaultConfig() Config {
	return Config{
		ExploreShare:   DefaultExploreShare,
		ScaleThreshold: DefaultScaleThreshold,
		Stickiness:     DefaultStickiness,
		MaxConcurrent:  DefaultMaxConcurrent,
		RetryInitial:   DefaultRetryInitial,
		RetryMax:       DefaultRetryMax,
	}
}

// Validate reports the first field of c out of range, by name.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s is %v; want %s", ErrInvalidConfig, field, v, want)
	}
	unit := func(v float64) bool { return v >= 0 && v <= 1 } // false for NaN
	switch {
	case c.MinWarm < 0:
		return bad("MinWarm", c.MinWarm, "0 or more")
	case !unit(c.ExploreShare):
		return bad("ExploreShare", c.ExploreShare, "a share in [0, 1]")
	case c.MaxExtra < 0:
		return bad("MaxExtra", c.MaxExtra, "0 or more")
	case !unit(c.ScaleThreshold) || (c.MaxExtra > 0 && c.ScaleThreshold == 0):
		return bad("ScaleThreshold", c.ScaleThreshold, "a utilisation in (0, 1]")
	case !(c.Stickiness >= 0) || math.IsInf(c.Stickiness, 0):
		return bad("Stickiness", c.Stickiness, "a finite number >= 0")
	case c.MaxConcurrent < 0:
		return bad("MaxConcurrent", c.MaxConcurrent, "0 (no bound) or more")
	case c.RetryInitial < 0:
		return bad("RetryInitial", c.RetryInitial, "a duration >= 0")
	case c.RetryMax < c.RetryInitial:
		return bad("RetryMax", c.RetryMax, fmt.Sprintf("at least RetryInitial (%v)", c.RetryInitial))
	}
	return nil
}

// Rand is the policy's source of randomness: the manager's seeded one, so
// that a simulation repeats itself. *clock.Rand and *math/rand/v2.Rand
// satisfy it.
type Rand interface {
	Uint64() uint64
}

// Candidate is one peer as the policy sees it: a snapshot the manager
// takes of the peer's record just before planning.
type Candidate struct {
	ID peer.ID
	// Score is the peer's quality score in [0, 1] (out of range and NaN
	// are clamped; NaN counts as 0).
	Score float64
	// Tried: the peer has had a link or a failed dial, so its score
	// rests on something. A peer never tried is a newcomer, for which
	// exploration keeps slots.
	Tried bool
	// State is the peer's warming state, and Role what the last plan
	// made of it.
	State State
	Role  Role
	// Connected: a link is open now. Warming the peer then costs a ping,
	// and no room under the connection limits.
	Connected bool
	// Dialable: the address book holds a live address to dial.
	Dialable bool
	// CircuitOpen: the peer's circuit breaker refuses dials now.
	CircuitOpen bool
	// Failures is the attempts that failed in a row, the last at
	// LastFailure.
	Failures    int
	LastFailure time.Time
}

// busy reports whether c holds a warm link or is about to.
func (c *Candidate) busy() bool { return c.State == Warm || c.State == Warming }

// needsLink reports whether warming c would open a new link.
func (c *Candidate) needsLink() bool { return !c.Connected && !c.busy() }

// Load is the stream load over the node's links: the streams open and
// their capacity, the links' stream limits summed.
type Load struct {
	Links, Streams, Capacity int
}

// Utilization returns Streams over Capacity, 0 without capacity.
func (l Load) Utilization() float64 {
	if l.Capacity <= 0 {
		return 0
	}
	return float64(l.Streams) / float64(l.Capacity)
}

// Plan is a round's decisions. Its slices are reused from round to round.
type Plan struct {
	// Roles holds each candidate's role, by index.
	Roles []Role
	// Start lists the candidates to start warming now, by index, in the
	// order to start them: kept ones by rank, then newcomers being
	// explored, then extras.
	Start []int
	// Explore is the number of exploration slots this round, Extra the
	// extra links scaling asked for, and Utilization the stream
	// utilisation it saw.
	Explore, Extra int
	Utilization    float64
}

// Policy plans keep-warm rounds. It keeps scratch space between rounds,
// so Plan must not be called concurrently.
type Policy struct {
	cfg          Config
	rand         Rand
	free, costly topK
}

// New returns a policy with cfg, drawing from r.
func New(cfg Config, r Rand) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%w: nil Rand", ErrInvalidConfig)
	}
	return &Policy{cfg: cfg, rand: r}, nil
}

// Config returns the policy's configuration.
func (p *Policy) Config() Config { return p.cfg }

// RetryAt returns when a peer whose last failures attempts failed in a
// row, the last at last, may be tried again: RetryInitial after the
// first, doubling with each next one, at most RetryMax.
func (p *Policy) RetryAt(failures int, last time.Time) time.Time {
	if failures <= 0 {
		return last
	}
	d := p.cfg.RetryInitial
	for i := 1; i < failures && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	return last.Add(min(d, p.cfg.RetryMax))
}

// eligible reports whether c may hold a slot this round: it holds a warm
// link or is warming, or it can be warmed (a link, or an address to dial,
// its circuit closed, and past its retry time if it failed).
func (p *Policy) eligible(c *Candidate, now time.Time) bool {
	switch c.State {
	case Warm, Warming:
		return true
	case Failed:
		if now.Before(p.RetryAt(c.Failures, c.LastFailure)) {
			return false
		}
	}
	return !c.CircuitOpen && (c.Connected || c.Dialable)
}

// rank is what the kept set and the extras are chosen by.
func (p *Policy) rank(c *Candidate) float64 {
	s := c.Score
	if !(s > 0) { // NaN too
		s = 0
	}
	s = min(s, 1)
	if c.busy() {
		s += p.cfg.Stickiness
	}
	return s
}

// Plan decides a round: which candidates form the kept set, which are
// extras, and which to start warming now. now is the manager's clock,
// load the streams over its links, and room how many more links the
// connection limits allow (negative: no limit). It writes into out,
// reusing its slices, and allocates nothing once they have grown.
//
// It draws from the policy's Rand once per round, twice when MinWarm ×
// ExploreShare has a fractional part.
func (p *Policy) Plan(now time.Time, cands []Candidate, load Load, room int, out *Plan) {
	cfg := &p.cfg
	if cap(out.Roles) < len(cands) {
		out.Roles = make([]Role, len(cands))
	}
	out.Roles = out.Roles[:len(cands)]
	clear(out.Roles)
	out.Start = out.Start[:0]
	out.Extra = 0
	out.Utilization = load.Utilization()

	seed := p.rand.Uint64()
	x := float64(cfg.MinWarm) * cfg.ExploreShare
	explore := int(x)
	if frac := x - float64(explore); frac > 0 && unitFloat(p.rand.Uint64()) < frac {
		explore++
	}

	// Census: attempts under way, the links they will open, explorations
	// in flight (which keep their slot), and newcomers to explore.
	inflight, pending, exploring, newcomers := 0, 0, 0, 0
	for i := range cands {
		c := &cands[i]
		switch {
		case c.State == Warming:
			inflight++
			if !c.Connected {
				pending++
			}
			if !c.Tried && c.Role == Kept && cfg.MinWarm > 0 {
				out.Roles[i] = Kept
				exploring++
			}
		case !c.Tried && c.State != Warm && p.eligible(c, now):
			newcomers++
		}
	}
	roomLeft := math.MaxInt
	if room >= 0 {
		roomLeft = max(room-pending, 0)
	}
	slots := max(exploring, min(explore, exploring+newcomers))
	out.Explore = slots

	// Exploitation first: when room is short, the best known peers get it.
	roomLeft -= p.fill(now, cands, cfg.MinWarm-slots, roomLeft, Kept, false, out)
	explored := p.exploreNewcomers(now, cands, slots-exploring, roomLeft, seed, out)
	roomLeft -= explored
	// Exploration slots the room left empty go to peers that need none.
	roomLeft -= p.fill(now, cands, slots-exploring-explored, roomLeft, Kept, false, out)

	// Peers the policy chose before that are warm or warming but not
	// kept now (extras, and kept peers that lost their slot) are extras:
	// they count against MaxExtra until they go cold.
	carried := 0
	for i := range cands {
		if out.Roles[i] == None && cands[i].Role != None && cands[i].busy() {
			out.Roles[i] = Extra
			carried++
		}
	}
	if cfg.MaxExtra > 0 && load.Links > 0 && out.Utilization > cfg.ScaleThreshold {
		// Enough links for the streams to sit at the threshold, counting
		// those on their way.
		perLink := float64(load.Capacity) / float64(load.Links)
		need := int(math.Ceil(float64(load.Streams) / (cfg.ScaleThreshold * perLink)))
		out.Extra = max(0, min(need-load.Links-pending, cfg.MaxExtra-carried))
		p.fill(now, cands, out.Extra, roomLeft, Extra, true, out)
	}

	if cfg.MaxConcurrent > 0 {
		out.Start = out.Start[:min(len(out.Start), max(cfg.MaxConcurrent-inflight, 0))]
	}
}

// fill gives role to the k eligible candidates of highest rank that have
// none yet, of which at most room need a new link (with newLinks, only
// those), appends those not yet warming to out.Start, and returns how
// many of them need a new link.
func (p *Policy) fill(now time.Time, cands []Candidate, k, room int, role Role, newLinks bool, out *Plan) int {
	if k <= 0 {
		return 0
	}
	freeK := k
	if newLinks {
		freeK = 0
	}
	p.free.reset(freeK)
	p.costly.reset(min(k, room))
	for i := range cands {
		c := &cands[i]
		if out.Roles[i] != None || !p.eligible(c, now) {
			continue
		}
		if c.needsLink() {
			p.costly.offer(p.rank(c), c.ID, i)
		} else {
			p.free.offer(p.rank(c), c.ID, i)
		}
	}
	a, b := p.free.items, p.costly.items
	took := 0
	for range k {
		var q pick
		switch {
		case len(a) > 0 && (len(b) == 0 || a[0].before(&b[0])):
			q, a = a[0], a[1:]
		case len(b) > 0:
			q, b = b[0], b[1:]
			took++
		default:
			return took
		}
		out.Roles[q.i] = role
		if !cands[q.i].busy() {
			out.Start = append(out.Start, int(q.i))
		}
	}
	return took
}

// exploreNewcomers keeps k more slots for newcomers (never tried, not
// warming), drawn at random, at most room of them; it returns how many
// it chose.
func (p *Policy) exploreNewcomers(now time.Time, cands []Candidate, k, room int, seed uint64, out *Plan) int {
	if k <= 0 {
		return 0
	}
	p.costly.reset(min(k, room))
	for i := range cands {
		c := &cands[i]
		if out.Roles[i] != None || c.Tried || c.busy() || !p.eligible(c, now) {
			continue
		}
		p.costly.offer(ticket(seed, c.ID), c.ID, i)
	}
	for _, q := range p.costly.items {
		out.Roles[q.i] = Kept
		out.Start = append(out.Start, int(q.i))
	}
	return len(p.costly.items)
}

// ticket is a newcomer's draw this round: a mix of the round's seed and
// its ID, so that the draw does not depend on the order of candidates.
func ticket(seed uint64, id peer.ID) float64 {
	h := seed
	for w := 0; w < len(id); w += 8 {
		h = mix64(h ^ binary.LittleEndian.Uint64(id[w:]))
	}
	return float64(h >> 11)
}

// mix64 is splitmix64's finaliser.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// unitFloat maps a uniform uint64 to [0, 1).
func unitFloat(u uint64) float64 { return float64(u>>11) / (1 << 53) }

// pick is one entry of a topK.
type pick struct {
	key float64
	id  peer.ID
	i   int
}

// before orders picks: higher key first, then lower ID.
func (a *pick) before(b *pick) bool {
	if a.key != b.key {
		return a.key > b.key
	}
	return a.id.Compare(b.id) < 0
}

// topK keeps the k best picks offered, best first. k is small (the kept
// set), so an insertion into a sorted slice beats a heap, and most
// offers are turned down by one comparison with the worst kept.
type topK struct {
	k     int
	items []pick
}

func (t *topK) reset(k int) {
	t.k = max(k, 0)
	t.items = t.items[:0]
}

func (t *topK) offer(key float64, id peer.ID, i int) {
	if t.k == 0 {
		return
	}
	q := pick{key: key, id: id, i: i}
	n := len(t.items)
	if n == t.k {
		if !q.before(&t.items[n-1]) {
			return
		}
		n--
		t.items = t.items[:n]
	}
	j := n
	for j > 0 && q.before(&t.items[j-1]) {
		j--
	}
	t.items = append(t.items, pick{})
	copy(t.items[j+1:], t.items[j:n])
	t.items[j] = q
}
