package transport

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// remoteIP returns the IP of a remote address, IPv4-mapped IPv6
// addresses as IPv4; false if it has none (a memory address).
func remoteIP(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// subnetOf is the subnet of ip for MaxPendingPerSubnet: its /24 (IPv4)
// or /64 (IPv6).
func subnetOf(ip netip.Addr) netip.Prefix {
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}

// hostOf is the "address" of ip for MaxInboundPerIP: the IPv4 address
// itself (/32), or its IPv6 /64, which one host usually holds whole.
func hostOf(ip netip.Addr) netip.Prefix {
	bits := 64
	if ip.Is4() {
		bits = 32
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}

// prefixString prints a host key: the bare address for an IPv4 /32.
func prefixString(p netip.Prefix) string {
	if p.Addr().Is4() && p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

// addrLinks counts the established inbound links per host (hostOf) for
// Config.MaxInboundPerIP: from when the listener admits a link until
// the link's Conn is closed.
type addrLinks struct {
	max int // > 0
	mu  sync.Mutex
	n   map[netip.Prefix]int
}

func newAddrLinks(max int) *addrLinks {
	if max <= 0 {
		return nil // unlimited: nothing to count
	}
	return &addrLinks{max: max, n: make(map[netip.Prefix]int)}
}

// full reports whether host has max links. A nil addrLinks is never
// full.
func (a *addrLinks) full(host netip.Prefix) bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[host] >= a.max
}

// reserve counts one more link from host, unless it has max already.
// The release it returns must be called exactly once (it is made
// idempotent by closeHook).
func (a *addrLinks) reserve(host netip.Prefix) (release func(), ok bool) {
	if a == nil {
		return func() {}, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[host] >= a.max {
		return nil, false
	}
	a.n[host]++
	return func() {
		a.mu.Lock()
		decrement(a.n, host)
		a.mu.Unlock()
	}, true
}

// count returns the links counted for host.
func (a *addrLinks) count(host netip.Prefix) int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[host]
}

// addrLimitError is the listener's refusal of a link from a host that
// has Config.MaxInboundPerIP links already; its text is the reason the
// dialer reads.
type addrLimitError struct {
	host  netip.Prefix
	limit int
}

func (e *addrLimitError) Error() string {
	return "too many links from " + prefixString(e.host) + " (limit " + strconv.Itoa(e.limit) + ")"
}

func (e *addrLimitError) Unwrap() error { return ErrAddrConnLimit }
