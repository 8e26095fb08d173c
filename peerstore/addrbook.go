package peerstore

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Source says where an address came from, which decides how far it is
// trusted: see AddrBook.Add.
type Source uint8

const (
	SourceManual     Source = iota + 1 // given by the application: AddPeer, Connect
	SourcePersistent                   // configured for a persistent peer: never expires
	SourceDialed                       // a dial to the peer succeeded on it
	// SourceInbound is the remote address of an inbound link: the peer's
	// ephemeral port, not dialable as it is. It is kept for information
	// and never dialed.
	SourceInbound
	SourceDiscovery // learnt from other peers or from discovery
)

var sourceNames = [...]string{
	SourceManual:     "manual",
	SourcePersistent: "persistent",
	SourceDialed:     "dialed",
	SourceInbound:    "inbound",
	SourceDiscovery:  "discovery",
}

func (s Source) String() string {
	if s.valid() {
		return sourceNames[s]
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}

func (s Source) valid() bool { return s >= SourceManual && s <= SourceDiscovery }

// trust ranks sources, higher for more trusted: what the operator
// configured over what the application said, over what worked, over
// hearsay, over an inbound link's ephemeral port.
func (s Source) trust() int {
	switch s {
	case SourcePersistent:
		return 5
	case SourceManual:
		return 4
	case SourceDialed:
		return 3
	case SourceDiscovery:
		return 2
	case SourceInbound:
		return 1
	}
	return 0
}

// Addr is one entry of an AddrBook, as AddrBook.Addrs reports it.
type Addr struct {
	Addr    string
	Source  Source
	Added   time.Time // when the address was added, or re-added after it expired
	Expires time.Time // the zero Time: never
	// LastSuccess is when a dial on the address last succeeded; the zero
	// Time if none has.
	LastSuccess time.Time
	Failures    uint32 // failed dials since the last success
}

// MaxAddrs is the most addresses an AddrBook holds. Past it, Add evicts.
const MaxAddrs = 16

// AddrBook is the set of addresses a peer may be reached on, each with
// its source and time to live. The zero value is an empty book ready to
// use.
//
// Expired addresses are never dialed, but stay in the book, counted by
// Len and listed by Addrs, until Expire drops them or Add reuses their
// place.
type AddrBook struct {
	addrs []addrEntry
}

// addrEntry is Addr in 48 bytes instead of 104.
type addrEntry struct {
	addr        string
	added       stamp
	expires     stamp // 0: never
	lastSuccess stamp // 0: never
	failures    uint32
	source      Source
}

func (e *addrEntry) expired(now stamp) bool { return e.expires != 0 && now >= e.expires }

func (e *addrEntry) dialable(now stamp) bool {
	return e.source != SourceInbound && !e.expired(now)
}

// Add records that the peer may be reached at addr, learnt from src, for
// ttl from now; ttl <= 0, or src SourcePersistent, means for ever. It
// panics if src is not one of the Source constants.
//
// Adding an address already in the book refreshes it: it keeps the later
// expiry of the old and the new, and the more trusted source, trust going
// SourcePersistent > SourceManual > SourceDialed > SourceDiscovery >
// SourceInbound. An address that had expired is added afresh.
//
// A book that would exceed MaxAddrs evicts one address, the new one
// included: an expired one first, then one of the least trusted source,
// then the oldest. An address from a source less trusted than all those
// in a full book is therefore not added.
func (b *AddrBook) Add(addr string, src Source, ttl time.Duration, now time.Time) {
	if !src.valid() {
		panic("peerstore: AddrBook.Add with invalid " + src.String())
	}
	n := stampOf(now)
	var expires stamp
	if ttl > 0 && src != SourcePersistent {
		expires = n.add(ttl)
	}

	if i := b.index(addr); i >= 0 {
		e := &b.addrs[i]
		if e.expired(n) {
			*e = addrEntry{addr: e.addr, added: n, expires: expires, source: src}
			return
		}
		if src.trust() > e.source.trust() {
			e.source = src
		}
		switch {
		case e.source == SourcePersistent || expires == 0:
			e.expires = 0
		case e.expires != 0:
			e.expires = max(e.expires, expires)
		}
		return
	}

	// The address often arrives as part of a larger message; a copy
	// keeps the record from pinning that message in memory.
	e := addrEntry{addr: strings.Clone(addr), added: n, expires: expires, source: src}
	if len(b.addrs) < MaxAddrs {
		b.addrs = append(b.addrs, e)
		return
	}
	victim := 0
	for i := 1; i < len(b.addrs); i++ {
		if evictFirst(&b.addrs[i], &b.addrs[victim], n) {
			victim = i
		}
	}
	if !evictFirst(&e, &b.addrs[victim], n) {
		b.addrs[victim] = e
	}
}

// evictFirst reports whether a should go before b from a full book.
func evictFirst(a, b *addrEntry, now stamp) bool {
	if ax, bx := a.expired(now), b.expired(now); ax != bx {
		return ax
	}
	if at, bt := a.source.trust(), b.source.trust(); at != bt {
		return at < bt
	}
	return a.added < b.added
}

// Remove deletes addr from the book, reporting whether it was there.
func (b *AddrBook) Remove(addr string) bool {
	i := b.index(addr)
	if i < 0 {
		return false
	}
	b.addrs = slices.Delete(b.addrs, i, i+1)
	b.release()
	return true
}

// DialOrder returns the addresses to dial the peer on, in the order to
// try them: live (unexpired) addresses of any source but SourceInbound.
//
// First comes the address that succeeded last, if it has not failed
// since; then the others by source trust, then by fewer failures since
// their last success, then newest first.
func (b *AddrBook) DialOrder(now time.Time) []string {
	n := stampOf(now)
	var buf [MaxAddrs]uint8
	order := buf[:0]
	var lastSuccess stamp // the latest success of an address that has not failed since
	for i := range b.addrs {
		e := &b.addrs[i]
		if !e.dialable(n) {
			continue
		}
		order = append(order, uint8(i))
		if e.failures == 0 {
			lastSuccess = max(lastSuccess, e.lastSuccess)
		}
	}
	if len(order) == 0 {
		return nil
	}
	slices.SortStableFunc(order, func(i, j uint8) int {
		x, y := &b.addrs[i], &b.addrs[j]
		if lastSuccess != 0 {
			xLast := x.failures == 0 && x.lastSuccess == lastSuccess
			yLast := y.failures == 0 && y.lastSuccess == lastSuccess
			if xLast != yLast {
				if xLast {
					return -1
				}
				return 1
			}
		}
		if xt, yt := x.source.trust(), y.source.trust(); xt != yt {
			return yt - xt
		}
		if x.failures != y.failures {
			if x.failures < y.failures {
				return -1
			}
			return 1
		}
		return -compareStamps(x.added, y.added)
	})
	addrs := make([]string, len(order))
	for k, i := range order {
		addrs[k] = b.addrs[i].addr
	}
	return addrs
}

func compareStamps(a, b stamp) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// HasDialable reports whether DialOrder would return any address.
func (b *AddrBook) HasDialable(now time.Time) bool {
	n := stampOf(now)
	for i := range b.addrs {
		if b.addrs[i].dialable(n) {
			return true
		}
	}
	return false
}

// Succeeded records that a dial on addr succeeded at now. It does not
// change the address's source: the manager adds it with SourceDialed,
// and the time to live it wants, if it should be one.
func (b *AddrBook) Succeeded(addr string, now time.Time) {
	if i := b.index(addr); i >= 0 {
		b.addrs[i].lastSuccess = stampOf(now)
		b.addrs[i].failures = 0
	}
}

// Failed records that a dial on addr failed.
func (b *AddrBook) Failed(addr string) {
	if i := b.index(addr); i >= 0 && b.addrs[i].failures < ^uint32(0) {
		b.addrs[i].failures++
	}
}

// Expire drops the addresses expired at now and returns how many it
// dropped.
func (b *AddrBook) Expire(now time.Time) int {
	n := stampOf(now)
	before := len(b.addrs)
	b.addrs = slices.DeleteFunc(b.addrs, func(e addrEntry) bool { return e.expired(n) })
	b.release()
	return before - len(b.addrs)
}

// Len returns the number of addresses in the book, expired ones included.
func (b *AddrBook) Len() int { return len(b.addrs) }

// Addrs returns a copy of the book's entries, expired ones included.
func (b *AddrBook) Addrs() []Addr {
	if len(b.addrs) == 0 {
		return nil
	}
	out := make([]Addr, len(b.addrs))
	for i, e := range b.addrs {
		out[i] = Addr{
			Addr:        e.addr,
			Source:      e.source,
			Added:       e.added.time(),
			Expires:     e.expires.time(),
			LastSuccess: e.lastSuccess.time(),
			Failures:    e.failures,
		}
	}
	return out
}

func (b *AddrBook) index(addr string) int {
	for i := range b.addrs {
		if b.addrs[i].addr == addr {
			return i
		}
	}
	return -1
}

// release frees the backing array of an emptied book: most records the
// manager keeps are of peers it is not connected to.
func (b *AddrBook) release() {
	if len(b.addrs) == 0 {
		b.addrs = nil
	}
}
