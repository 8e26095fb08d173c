package transport

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// pendingState is how far a pending inbound socket has got.
type pendingState uint8

const (
	// pendingSilent: nothing received yet. Evicted first.
	pendingSilent pendingState = iota
	// pendingSpoke: its first byte arrived; the handshake runs. Evicted
	// only once it has run longer than FirstByteTimeout (slow).
	pendingSpoke
	// pendingAdmitted: handshake and checks done, the verdict being
	// written or the link waiting for Accept. Never evicted.
	pendingAdmitted
)

// evictReason says why an entry was evicted.
type evictReason uint8

const (
	evictSilent evictReason = iota + 1 // it had sent nothing
	evictSlow                          // its handshake had run longer than FirstByteTimeout
)

func (r evictReason) String() string {
	if r == evictSlow {
		return "slow"
	}
	return "silent"
}

// pendingScope names one of the caps on pending handshakes.
type pendingScope uint8

const (
	scopeIP     pendingScope = iota + 1 // MaxPendingPerIP: one source IP
	scopeSubnet                         // MaxPendingPerSubnet: its /24 (IPv4) or /64 (IPv6)
	scopeGlobal                         // MaxPendingHandshakes: the whole listener
)

func (s pendingScope) String() string {
	switch s {
	case scopeIP:
		return "per-IP"
	case scopeSubnet:
		return "per-subnet"
	}
	return "global"
}

// pendingEntry is one inbound socket from its accept until its link is
// handed to Accept (or it fails, or is evicted).
type pendingEntry struct {
	conn   net.Conn // the raw socket; eviction closes it (nil in unit tests)
	remote net.Addr
	start  time.Time // accepted at
	// limited: counted in the per-IP and per-subnet scopes (the remote
	// has an IP and is not in Config.LimitExempt).
	limited bool
	ip      netip.Addr
	subnet  netip.Prefix

	// Guarded by the table's mu.
	state      pendingState
	inTable    bool
	prev, next *pendingEntry // in order of start: head is the oldest
}

// pendingLimits are the caps of a pendingTable.
type pendingLimits struct {
	global    int           // > 0
	perIP     int           // <= 0: no per-IP cap
	perSubnet int           // <= 0: no per-subnet cap
	slowAfter time.Duration // a spoken entry older than this is slow
}

// pendingTable holds a listener's pending inbound sockets and decides,
// when a new one would exceed a cap, which one to evict or whether to
// refuse the newcomer. It does no I/O itself, apart from calling probe;
// the listener closes victims and refuses newcomers.
//
// The rule: when a new socket hits a cap, the table evicts, from that
// cap's scope, the oldest entry still silent; failing that, the oldest
// whose handshake has run longer than slowAfter; only if neither
// exists is the newcomer refused. The scope is the narrowest full one
// (per-IP, then per-subnet, then global): a victim from it also frees
// a place in every wider scope, which holds it too. So a full table
// never refuses a socket while one that has sent nothing sits in its
// scope, and a flood from one address can only evict its own sockets
// unless the global cap is what is full.
type pendingTable struct {
	limits pendingLimits
	// probe, if set, reports whether a silent entry's socket has bytes
	// waiting to be read: it has spoken, though its goroutine has not
	// read them yet (under load it may not have run). Such an entry is
	// not evicted as silent. It is called with mu held and must not
	// block.
	probe func(*pendingEntry) bool

	mu        sync.Mutex
	head      *pendingEntry
	tail      *pendingEntry
	n         int
	perIP     map[netip.Addr]int
	perSubnet map[netip.Prefix]int
}

func newPendingTable(limits pendingLimits, probe func(*pendingEntry) bool) *pendingTable {
	return &pendingTable{
		limits:    limits,
		probe:     probe,
		perIP:     make(map[netip.Addr]int),
		perSubnet: make(map[netip.Prefix]int),
	}
}

// admit enters e, evicting to make room if a cap is reached. It returns
// the entries evicted (already out of the table; the caller closes
// them) with their reasons. If e could not be entered, ok is false and
// full is the cap that refused it.
func (t *pendingTable) admit(e *pendingEntry, now time.Time) (victims []eviction, full pendingScope, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// One eviction from the narrowest full scope frees a place in every
	// scope of e; the bound only guards against a broken invariant.
	for range 3 {
		scope := t.fullScope(e)
		if scope == 0 {
			e.state = pendingSilent
			if len(victims) > 0 && t.probe != nil && t.probe(e) {
				e.state = pendingSpoke // it waited in the kernel's queue long enough to speak
			}
			t.insert(e)
			return victims, 0, true
		}
		v, why := t.victim(scope, e, now)
		if v == nil {
			return victims, scope, false
		}
		t.remove(v)
		victims = append(victims, eviction{v, why, scope})
	}
	return victims, scopeGlobal, false
}

// eviction is one entry admit evicted.
type eviction struct {
	e     *pendingEntry
	why   evictReason
	scope pendingScope // the cap that was full
}

// fullScope returns the narrowest scope of e that is at its cap, 0 if
// none.
func (t *pendingTable) fullScope(e *pendingEntry) pendingScope {
	if e.limited {
		if t.limits.perIP > 0 && t.perIP[e.ip] >= t.limits.perIP {
			return scopeIP
		}
		if t.limits.perSubnet > 0 && t.perSubnet[e.subnet] >= t.limits.perSubnet {
			return scopeSubnet
		}
	}
	if t.n >= t.limits.global {
		return scopeGlobal
	}
	return 0
}

// inScope reports whether x counts in e's scope s.
func inScope(x, e *pendingEntry, s pendingScope) bool {
	switch s {
	case scopeIP:
		return x.limited && x.ip == e.ip
	case scopeSubnet:
		return x.limited && x.subnet == e.subnet
	}
	return true
}

// victim picks the entry to evict from e's scope s: the oldest silent
// one, else the oldest slow one, else none.
func (t *pendingTable) victim(s pendingScope, e *pendingEntry, now time.Time) (*pendingEntry, evictReason) {
	var slow *pendingEntry
	for x := t.head; x != nil; x = x.next {
		if !inScope(x, e, s) {
			continue
		}
		if x.state == pendingSilent {
			if t.probe == nil || !t.probe(x) {
				return x, evictSilent
			}
			x.state = pendingSpoke // its bytes are waiting for its goroutine
		}
		if slow == nil && x.state == pendingSpoke && now.Sub(x.start) > t.limits.slowAfter {
			slow = x
		}
	}
	if slow != nil {
		return slow, evictSlow
	}
	return nil, 0
}

// spoke records that e's first byte arrived. It reports false if e was
// evicted meanwhile (its socket is closed or being closed).
func (t *pendingTable) spoke(e *pendingEntry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.inTable && e.state == pendingSilent {
		e.state = pendingSpoke
	}
	return e.inTable
}

// admitted records that e's handshake is done: from now on it is not
// evicted. It reports false if e was evicted before.
func (t *pendingTable) admitted(e *pendingEntry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.inTable {
		e.state = pendingAdmitted
	}
	return e.inTable
}

// release takes e out of the table. It reports false if e was no longer
// in it: it was evicted, and its outcome is accounted for already.
func (t *pendingTable) release(e *pendingEntry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !e.inTable {
		return false
	}
	t.remove(e)
	return true
}

// len returns the number of entries.
func (t *pendingTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *pendingTable) insert(e *pendingEntry) {
	e.inTable = true
	e.prev, e.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
	t.n++
	if e.limited {
		t.perIP[e.ip]++
		t.perSubnet[e.subnet]++
	}
}

func (t *pendingTable) remove(e *pendingEntry) {
	e.inTable = false
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
	t.n--
	if e.limited {
		decrement(t.perIP, e.ip)
		decrement(t.perSubnet, e.subnet)
	}
}

// decrement lowers m[k], deleting it at zero so that the maps hold only
// the addresses pending now.
func decrement[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}
