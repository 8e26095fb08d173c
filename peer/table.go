package peer

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// defaultShards is the shard count NewTable uses when given 0. An
// operation waits only if another core holds the same shard lock at that
// instant, which with c cores busy in the table happens with probability
// about (c-1)/64 times the share of time each spends there: negligible
// for 2–16 cores and still well under one at 64. More shards would buy
// little and make Len, Range and Snapshot visit more locks; 64 costs
// about 8 KiB of padded shards and 64 small maps.
const defaultShards = 64

// maxShards caps the shard count; past it more shards only cost memory.
const maxShards = 1 << 16

// cacheLinePair is the span padded against false sharing: two 64-byte
// lines, since x86 prefetches lines in adjacent pairs and Apple's arm64
// cores have 128-byte lines. sync.Pool pads its per-P data the same way.
const cacheLinePair = 128

// Table is a map from peer ID to V, safe for concurrent use, split into
// shards with one lock each so that cores working on different peers do
// not wait for one another. It holds one entry per known peer; V is
// usually a pointer to a per-peer struct with its own lock, so that the
// table lock is held only to find the entry.
//
// A Table must be made with NewTable; the zero Table is not usable.
//
// Functions passed to LoadOrCreate and DeleteIf run under a shard lock
// and must not call back into the table. The function passed to Range
// runs with no lock held and may.
type Table[V any] struct {
	shards []shard[V]
	mask   uint64
}

// shard is one lock and the entries under it. The fields every operation
// touches sit at the start; the rest of the 128 bytes is padding, so that
// locking one shard does not bounce the cache line of its neighbours.
type shard[V any] struct {
	mu sync.RWMutex
	m  map[ID]V
	n  atomic.Int64 // len(m), written under mu, read by Len without it
	_  [cacheLinePair - shardFieldsSize%cacheLinePair]byte
}

// shardFieldsSize is the size of shard's fields before the padding. It is
// spelled out because unsafe.Sizeof of a generic type is not a constant;
// a map's size does not depend on its types.
const shardFieldsSize = unsafe.Sizeof(sync.RWMutex{}) + unsafe.Sizeof(map[ID]struct{}(nil)) + unsafe.Sizeof(atomic.Int64{})

// NewTable returns an empty table with the given number of shards,
// rounded up to a power of two (capped at 65536). Zero or less selects
// the default, 64, which suits machines of 2 to 64 cores.
func NewTable[V any](shards int) *Table[V] {
	switch {
	case shards <= 0:
		shards = defaultShards
	case shards > maxShards:
		shards = maxShards
	}
	n := 1 << bits.Len(uint(shards-1)) // next power of two ≥ shards
	t := &Table[V]{shards: make([]shard[V], n), mask: uint64(n - 1)}
	for i := range t.shards {
		t.shards[i].m = make(map[ID]V)
	}
	return t
}

// shardOf picks id's shard from the ID's first 8 bytes. They need no
// hashing: an ID is an ed25519 public key, whose low bytes (the low bits
// of a curve point's y coordinate) are uniform. A peer that grinds keys
// can crowd one shard, but that costs only lock sharing; the shard's map
// hashes with its own random seed.
func (t *Table[V]) shardOf(id ID) *shard[V] {
	return &t.shards[binary.LittleEndian.Uint64(id[:8])&t.mask]
}

// Get returns the entry for id and whether there is one.
func (t *Table[V]) Get(id ID) (V, bool) {
	s := t.shardOf(id)
	s.mu.RLock()
	v, ok := s.m[id]
	s.mu.RUnlock()
	return v, ok
}

// LoadOrStore returns the entry for id if there is one (loaded is true);
// otherwise it stores v and returns it (loaded is false).
func (t *Table[V]) LoadOrStore(id ID, v V) (actual V, loaded bool) {
	s := t.shardOf(id)
	// Most calls find the entry; a read lock lets those run in parallel.
	s.mu.RLock()
	actual, loaded = s.m[id]
	s.mu.RUnlock()
	if loaded {
		return actual, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if actual, loaded = s.m[id]; loaded {
		return actual, true
	}
	s.store(id, v)
	return v, false
}

// LoadOrCreate returns the entry for id if there is one (loaded is true);
// otherwise it stores and returns create() (loaded is false). create is
// called at most once, only when the entry is absent, and under the shard
// lock, so of many goroutines racing for one new peer exactly one creates
// its entry and the others get that one. create must be quick and must not
// call back into the table.
func (t *Table[V]) LoadOrCreate(id ID, create func() V) (actual V, loaded bool) {
	s := t.shardOf(id)
	s.mu.RLock()
	actual, loaded = s.m[id]
	s.mu.RUnlock()
	if loaded {
		return actual, true
	}
	s.mu.Lock()
	defer s.mu.Unlock() // deferred so that a panic in create does not leave the shard locked
	if actual, loaded = s.m[id]; loaded {
		return actual, true
	}
	actual = create()
	s.store(id, actual)
	return actual, false
}

// Store sets the entry for id to v, replacing any entry there.
func (t *Table[V]) Store(id ID, v V) {
	s := t.shardOf(id)
	s.mu.Lock()
	s.store(id, v)
	s.mu.Unlock()
}

// Delete removes the entry for id, if any.
func (t *Table[V]) Delete(id ID) {
	s := t.shardOf(id)
	s.mu.Lock()
	delete(s.m, id)
	s.n.Store(int64(len(s.m)))
	s.mu.Unlock()
}

// DeleteIf removes the entry for id only if pred reports true for it, and
// reports whether it removed one. It lets a goroutine remove the entry it
// knows (pred compares against it) without removing a newer entry another
// goroutine stored for the same peer in the meantime. pred runs under the
// shard lock and must not call back into the table.
func (t *Table[V]) DeleteIf(id ID, pred func(V) bool) bool {
	s := t.shardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok || !pred(v) {
		return false
	}
	delete(s.m, id)
	s.n.Store(int64(len(s.m)))
	return true
}

// Len returns the number of entries. It takes no lock, so while other
// goroutines write it is a close count, not an exact one.
func (t *Table[V]) Len() int {
	var n int64
	for i := range t.shards {
		n += t.shards[i].n.Load()
	}
	return int(n)
}

// Range calls f for each entry, in no particular order, until f returns
// false. It is not a snapshot of the whole table: each shard's entries are
// copied out under its lock and f is called after the lock is released,
// so f may call any Table method, and an entry stored or deleted during
// Range may or may not be seen. Range has the shape of iter.Seq2, so
// `for id, v := range t.Range` works.
func (t *Table[V]) Range(f func(ID, V) bool) {
	type entry struct {
		id ID
		v  V
	}
	var buf []entry
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		buf = slices.Grow(buf[:0], len(s.m))
		for id, v := range s.m {
			buf = append(buf, entry{id, v})
		}
		s.mu.RUnlock()
		for _, e := range buf {
			if !f(e.id, e.v) {
				return
			}
		}
	}
}

// Snapshot returns the values of all entries, in no particular order, for
// sweeps (health checks, trimming) that work on each peer without holding
// any table lock. Like Range, it is consistent per shard, not as a whole.
func (t *Table[V]) Snapshot() []V {
	vs := make([]V, 0, t.Len())
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, v := range s.m {
			vs = append(vs, v)
		}
		s.mu.RUnlock()
	}
	return vs
}

// store sets the entry; s.mu must be held for writing.
func (s *shard[V]) store(id ID, v V) {
	s.m[id] = v
	s.n.Store(int64(len(s.m)))
}
