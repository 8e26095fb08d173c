package peerlink

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/trim"
)

// Protection and tags. They live in the peer's record, so they survive
// its links: a protected peer that re-dials is protected still, and a
// tag set before a peer connects counts once it does. A protected peer's
// record is never pruned (until Unprotect or RemovePeer); a record with
// tags alone is pruned like any other, its tags with it.

// Bounds on what the application may hang on one peer: protections,
// tags and decaying tags together.
const (
	MaxTagsPerPeer = 64
	MaxTagLen      = 128
)

var (
	// ErrInvalidTag is returned for an empty or too long tag name, a
	// decaying tag's bad rule, a name already taken by a decaying tag,
	// or a decaying tag used after Close.
	ErrInvalidTag = errors.New("peerlink: invalid tag")
	// ErrTooManyTags is returned when a peer already carries
	// MaxTagsPerPeer protections and tags.
	ErrTooManyTags = errors.New("peerlink: too many tags on one peer")
)

// peerTags are one peer's protections and tags. They are guarded by the
// record's mutex; a record with none has a nil *peerTags.
type peerTags struct {
	protect  map[string]struct{}
	values   map[string]int
	decaying map[*DecayingTag]trim.DecayingValue
}

func (t *peerTags) protected() bool { return t != nil && len(t.protect) > 0 }

// sum returns the sum of t's tag values at now, saturating at the int
// range, after dropping the decaying tags that decayed away or were
// closed.
func (t *peerTags) sum(now time.Time) int {
	if t == nil {
		return 0
	}
	var s float64
	for _, v := range t.values {
		s += float64(v)
	}
	for d, v := range t.decaying {
		if val, ok := d.value(v, now); ok {
			s += float64(val)
		} else {
			delete(t.decaying, d)
		}
	}
	return int(max(min(s, math.MaxInt64), math.MinInt64))
}

// full reports whether t has no room for one more entry at now.
func (t *peerTags) full(now time.Time) bool {
	t.sum(now) // drops what decayed away
	return len(t.protect)+len(t.values)+len(t.decaying) >= MaxTagsPerPeer
}

// writeTags returns r's tags, made if r has none. r.mu must be held.
func (r *record) writeTags() *peerTags {
	if r.tags == nil {
		r.tags = &peerTags{
			protect: make(map[string]struct{}), values: make(map[string]int),
			decaying: make(map[*DecayingTag]trim.DecayingValue),
		}
	}
	return r.tags
}

// dropEmptyTags lets r's tags go once it has none. r.mu must be held.
func (r *record) dropEmptyTags() {
	if t := r.tags; t != nil && len(t.protect)+len(t.values)+len(t.decaying) == 0 {
		r.tags = nil
	}
}

// checkTag checks a tag's peer and name.
func (m *ConnectionManager) checkTag(id peer.ID, tag string) error {
	if id.IsZero() || id == m.id {
		return fmt.Errorf("%w: %s", ErrInvalidPeer, id.ShortString())
	}
	if tag == "" || len(tag) > MaxTagLen {
		return fmt.Errorf("%w: name %q: want 1 to %d bytes", ErrInvalidTag, tag, MaxTagLen)
	}
	return m.usable()
}

// addTag runs set on id's tags under the record's lock, after checking
// there is room if add is true (a new entry).
func (m *ConnectionManager) addTag(id peer.ID, tag string, add func(*peerTags) bool, set func(*peerTags)) error {
	if err := m.checkTag(id, tag); err != nil {
		return err
	}
	now := m.clock.Now()
	r := m.lockRecord(id)
	defer r.mu.Unlock()
	t := r.writeTags()
	if add(t) && t.full(now) {
		r.dropEmptyTags()
		return fmt.Errorf("%w: %s carries %d", ErrTooManyTags, id.ShortString(), MaxTagsPerPeer)
	}
	set(t)
	r.dropEmptyTags()
	return nil
}

// Protect keeps id's link from trims and idle expiry while any tag
// protects it (go-libp2p's Protect): it is never chosen as a victim,
// whatever its score, and its record is never pruned. Protecting twice
// with one tag is protecting once. It fails for an invalid ID or tag, or
// when the peer carries MaxTagsPerPeer tags already. A link failing its
// health checks is still closed (EvictUnhealthy, the health monitor).
func (m *ConnectionManager) Protect(id peer.ID, tag string) error {
	return m.addTag(id, tag,
		func(t *peerTags) bool { _, ok := t.protect[tag]; return !ok },
		func(t *peerTags) { t.protect[tag] = struct{}{} })
}

// Unprotect removes tag's protection of id and reports whether id is
// still protected by another tag.
func (m *ConnectionManager) Unprotect(id peer.ID, tag string) bool {
	still := false
	m.editTags(id, func(t *peerTags) {
		delete(t.protect, tag)
		still = t.protected()
	})
	return still
}

// IsProtected reports whether tag protects id; with tag "", whether any
// tag does.
func (m *ConnectionManager) IsProtected(id peer.ID, tag string) bool {
	is := false
	m.editTags(id, func(t *peerTags) {
		_, is = t.protect[tag]
		is = is || (tag == "" && t.protected())
	})
	return is
}

// editTags runs f on id's tags under its record's lock, if it has any,
// and lets them go if f leaves none.
func (m *ConnectionManager) editTags(id peer.ID, f func(*peerTags)) {
	r, ok := m.peers.Get(id)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tags != nil {
		f(r.tags)
		r.dropEmptyTags()
	}
}

// TagPeer sets id's tag to value. A peer's tags add up, and their sum
// adds to its trim priority (see TrimConfig): ScorePoints × its quality
// score + its tags, the lowest trimmed first. A negative value makes the
// peer go sooner. The tags live in the peer's record, created if need
// be. It fails for an invalid ID or tag, a name a decaying tag has
// (RegisterDecayingTag), or a peer that carries MaxTagsPerPeer tags.
func (m *ConnectionManager) TagPeer(id peer.ID, tag string, value int) error {
	return m.UpsertTag(id, tag, func(int) int { return value })
}

// UntagPeer removes id's tag.
func (m *ConnectionManager) UntagPeer(id peer.ID, tag string) {
	m.editTags(id, func(t *peerTags) { delete(t.values, tag) })
}

// UpsertTag sets id's tag to upsert of its current value (0 if unset),
// as TagPeer does. upsert runs without the manager's locks held and may
// run more than once if the tag changes meanwhile, so it must be a pure
// function of its argument.
func (m *ConnectionManager) UpsertTag(id peer.ID, tag string, upsert func(int) int) error {
	if upsert == nil {
		return fmt.Errorf("%w: nil upsert function for %q", ErrInvalidTag, tag)
	}
	if m.trim.tags.lookup(tag) != nil {
		return fmt.Errorf("%w: %q is a decaying tag: use its Bump", ErrInvalidTag, tag)
	}
	for {
		old, had := m.tagValue(id, tag)
		v := upsert(old)
		done := false
		err := m.addTag(id, tag, func(t *peerTags) bool { return !had }, func(t *peerTags) {
			if cur, ok := t.values[tag]; ok == had && cur == old {
				t.values[tag] = v
				done = true
			}
		})
		if err != nil || done {
			return err
		}
	}
}

// tagValue returns id's tag and whether it is set.
func (m *ConnectionManager) tagValue(id peer.ID, tag string) (v int, ok bool) {
	m.editTags(id, func(t *peerTags) { v, ok = t.values[tag] })
	return v, ok
}

// TagInfo is what the application has hung on a peer.
type TagInfo struct {
	// Tags holds each tag's value now, decaying tags included (a plain
	// tag and a decaying tag of one name are shown added up).
	Tags map[string]int
	// Value is the sum of the tags (saturating at the int range).
	Value int
	// Protected lists the tags protecting the peer, sorted.
	Protected []string
	// Priority is the peer's trim priority now: trim.Priority of its
	// QualityScore and Value. The lowest goes first.
	Priority float64
}

// TagInfo returns id's protections and tags as of now, and false for a
// peer the manager has no record of.
func (m *ConnectionManager) TagInfo(id peer.ID) (TagInfo, bool) {
	r, ok := m.peers.Get(id)
	if !ok {
		return TagInfo{}, false
	}
	score := m.QualityScore(id)
	now := m.clock.Now()
	info := TagInfo{Tags: make(map[string]int)}
	r.mu.Lock()
	if t := r.tags; t != nil {
		info.Value = t.sum(now)
		maps.Copy(info.Tags, t.values)
		for d, v := range t.decaying {
			val, _ := d.value(v, now)
			info.Tags[d.name] += val
		}
		info.Protected = slices.Sorted(maps.Keys(t.protect))
	}
	r.mu.Unlock()
	info.Priority = trim.Priority(score, info.Value)
	return info, true
}

// tagRegistry holds the decaying tags by name.
type tagRegistry struct {
	mu     sync.RWMutex
	byName map[string]*DecayingTag
}

func (g *tagRegistry) lookup(name string) *DecayingTag {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.byName[name]
}

// DecayingTag is a tag whose value decays with time (go-libp2p's decaying
// tags): every Interval its value on each peer falls by its DecayFunc;
// Bump raises it by its BumpFunc. The value is computed when read, from
// the last bump and the manager's clock: no timer runs per tag or per
// peer. Its values add to the peers' trim priority like TagPeer's.
type DecayingTag struct {
	m      *ConnectionManager
	name   string
	rule   trim.Decay
	closed atomic.Bool
}

// RegisterDecayingTag registers a decaying tag: its value on a peer falls
// by decay every interval from the peer's last bump, and rises by bump
// on Bump. For example go-libp2p-pubsub's first-delivery tag is
// (10 min, trim.DecayFixed(1), trim.BumpSumBounded(0, 15)). It fails
// with ErrInvalidTag for a bad name or rule, or a name already
// registered.
func (m *ConnectionManager) RegisterDecayingTag(name string, interval time.Duration, decay trim.DecayFunc, bump trim.BumpFunc) (*DecayingTag, error) {
	if name == "" || len(name) > MaxTagLen {
		return nil, fmt.Errorf("%w: name %q: want 1 to %d bytes", ErrInvalidTag, name, MaxTagLen)
	}
	rule := trim.Decay{Interval: interval, DecayBy: decay, BumpBy: bump}
	if err := rule.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidTag, name, err)
	}
	g := &m.trim.tags
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byName[name] != nil {
		return nil, fmt.Errorf("%w: %q is registered already", ErrInvalidTag, name)
	}
	if g.byName == nil {
		g.byName = make(map[string]*DecayingTag)
	}
	t := &DecayingTag{m: m, name: name, rule: rule}
	g.byName[name] = t
	return t, nil
}

// Name returns the tag's name.
func (t *DecayingTag) Name() string { return t.name }

// Interval returns the tag's decay interval.
func (t *DecayingTag) Interval() time.Duration { return t.rule.Interval }

// value returns the tag's value v at now, false once it decayed away or
// the tag was closed.
func (t *DecayingTag) value(v trim.DecayingValue, now time.Time) (int, bool) {
	if t.closed.Load() {
		return 0, false
	}
	return t.rule.Value(v, now)
}

// Bump applies delta to the tag's value on id (from 0 if it had none, or
// it decayed away) and restarts its decay. It fails for an invalid ID, a
// closed tag, or a peer that carries MaxTagsPerPeer tags.
func (t *DecayingTag) Bump(id peer.ID, delta int) error {
	if t.closed.Load() {
		return fmt.Errorf("%w: %q is closed", ErrInvalidTag, t.name)
	}
	now := t.m.clock.Now()
	return t.m.addTag(id, t.name,
		func(pt *peerTags) bool { _, ok := pt.decaying[t]; return !ok },
		func(pt *peerTags) {
			v := pt.decaying[t]
			t.rule.Bump(&v, delta, now)
			pt.decaying[t] = v
		})
}

// Remove takes the tag off id.
func (t *DecayingTag) Remove(id peer.ID) {
	t.m.editTags(id, func(pt *peerTags) { delete(pt.decaying, t) })
}

// Close unregisters the tag: its values count on no peer from now on (each
// peer's is dropped when next read), and its name may be registered
// again. Bump then fails.
func (t *DecayingTag) Close() {
	if t.closed.Swap(true) {
		return
	}
	g := &t.m.trim.tags
	g.mu.Lock()
	if g.byName[t.name] == t {
		delete(g.byName, t.name)
	}
	g.mu.Unlock()
}
