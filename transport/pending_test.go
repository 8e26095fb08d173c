package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// tableTest drives a pendingTable without sockets: entries are named,
// their accept times are t0 plus a number of seconds.
type tableTest struct {
	t       *testing.T
	tab     *pendingTable
	t0      time.Time
	entries map[string]*pendingEntry
	unread  map[string]bool // what the probe reports
}

func newTableTest(t *testing.T, limits pendingLimits) *tableTest {
	tt := &tableTest{t: t, t0: time.Unix(1000, 0), entries: map[string]*pendingEntry{}, unread: map[string]bool{}}
	tt.tab = newPendingTable(limits, func(e *pendingEntry) bool { return tt.unread[e.remote.String()] })
	return tt
}

// entry makes an entry named name from ip ("" for none: a memory
// address), accepted at t0+sec.
func (tt *tableTest) entry(name, ip string, sec int) *pendingEntry {
	e := &pendingEntry{remote: MemoryAddr(name), start: tt.t0.Add(time.Duration(sec) * time.Second)}
	if ip != "" {
		a := netip.MustParseAddr(ip)
		e.limited, e.ip, e.subnet = true, a, subnetOf(a)
	}
	return e
}

// admit admits name and checks the outcome: the names evicted, and
// whether it was entered (else refused by scope full).
func (tt *tableTest) admit(name, ip string, sec int, wantEvicted string, wantWhy evictReason, wantOK bool, wantFull pendingScope) {
	tt.t.Helper()
	e := tt.entry(name, ip, sec)
	victims, full, ok := tt.tab.admit(e, e.start)
	var got string
	var why evictReason
	for _, v := range victims {
		got += v.e.remote.String()
		why = v.why
		if v.e.inTable {
			tt.t.Errorf("%s: victim %s still in the table", name, v.e.remote)
		}
		if v.scope != wantFull && wantFull != 0 {
			tt.t.Errorf("%s: victim %s from scope %v, want %v", name, v.e.remote, v.scope, wantFull)
		}
	}
	if got != wantEvicted || why != wantWhy || ok != wantOK || (!ok && full != wantFull) {
		tt.t.Errorf("admit %s: evicted %q (%v), ok %v, full %v; want %q (%v), %v, %v",
			name, got, why, ok, full, wantEvicted, wantWhy, wantOK, wantFull)
	}
	if ok {
		tt.entries[name] = e
	}
}

func (tt *tableTest) spoke(names ...string) {
	tt.t.Helper()
	for _, n := range names {
		if !tt.tab.spoke(tt.entries[n]) {
			tt.t.Errorf("spoke(%s): not in the table", n)
		}
	}
}

func TestPendingTableEvictionOrder(t *testing.T) {
	const slowAfter = 2 * time.Second
	tt := newTableTest(t, pendingLimits{global: 3, slowAfter: slowAfter})
	tt.admit("a", "", 0, "", 0, true, 0)
	tt.admit("b", "", 1, "", 0, true, 0)
	tt.admit("c", "", 2, "", 0, true, 0)
	// Full: the oldest silent goes.
	tt.admit("d", "", 3, "a", evictSilent, true, scopeGlobal)
	// b has spoken: c is the oldest silent, though b is older (and slow
	// by now: 1 s + 4 s).
	tt.spoke("b")
	tt.admit("e", "", 5, "c", evictSilent, true, scopeGlobal)
	// b, d, e. All spoken: the oldest slow goes (b, accepted at 1).
	tt.spoke("d", "e")
	tt.admit("f", "", 6, "b", evictSlow, true, scopeGlobal)
	// d (3), e (5), f (6, silent). f is silent: it goes, though the
	// newest.
	tt.admit("g", "", 6, "f", evictSilent, true, scopeGlobal)
	// d, e, g; all spoken, none older than slowAfter at 7 (d is 4 s old:
	// slow). At 4.5 none is slow: refused.
	tt.spoke("g")
	e := tt.entry("h", "", 0)
	if v, full, ok := tt.tab.admit(e, tt.t0.Add(4500*time.Millisecond)); ok || len(v) != 0 || full != scopeGlobal {
		t.Errorf("admit at 4.5 s: %d evicted, ok %v, full %v; want refused by the global cap", len(v), ok, full)
	}
	// Exactly slowAfter old is not slow yet; a moment later it is.
	e = tt.entry("h", "", 0)
	if v, _, ok := tt.tab.admit(e, tt.t0.Add(3*time.Second+slowAfter)); ok || len(v) != 0 {
		t.Errorf("an entry exactly slowAfter old was evicted")
	}
	tt.admit("h", "", 6, "d", evictSlow, true, scopeGlobal)
	// Admitted entries are never evicted, however old.
	for _, n := range []string{"e", "g", "h"} {
		if !tt.tab.admitted(tt.entries[n]) {
			t.Fatalf("admitted(%s) false", n)
		}
	}
	tt.admit("i", "", 100, "", 0, false, scopeGlobal)
	if n := tt.tab.len(); n != 3 {
		t.Errorf("len %d, want 3", n)
	}
}

// The probe: a silent entry whose socket has bytes waiting has spoken.
func TestPendingTableProbe(t *testing.T) {
	tt := newTableTest(t, pendingLimits{global: 2, slowAfter: time.Second})
	tt.admit("a", "", 0, "", 0, true, 0)
	tt.admit("b", "", 1, "", 0, true, 0)
	tt.unread["a"] = true
	tt.admit("c", "", 1, "b", evictSilent, true, scopeGlobal)
	if st := tt.entries["a"].state; st != pendingSpoke {
		t.Errorf("probed entry in state %d, want spoke", st)
	}
	// a is now taken as spoken: it goes as slow (2 s > 1 s), after c, the
	// silent one.
	tt.admit("d", "", 2, "c", evictSilent, true, scopeGlobal)
	tt.spoke("d")
	tt.admit("e", "", 3, "a", evictSlow, true, scopeGlobal)
}

// Each cap evicts within its own scope, and only the narrowest full one
// matters.
func TestPendingTableScopes(t *testing.T) {
	tt := newTableTest(t, pendingLimits{global: 6, perIP: 2, perSubnet: 3, slowAfter: time.Minute})
	tt.admit("x1", "192.0.2.1", 0, "", 0, true, 0) // another subnet, oldest of all
	tt.admit("a1", "10.0.0.1", 1, "", 0, true, 0)
	tt.admit("b1", "10.0.0.2", 2, "", 0, true, 0)
	tt.admit("a2", "10.0.0.1", 3, "", 0, true, 0)
	// 10.0.0.1 is at its cap: its own oldest silent goes, not x1 or b1,
	// which are older.
	tt.admit("a3", "10.0.0.1", 4, "a1", evictSilent, true, scopeIP)
	// 10.0.0.0/24 holds a2, a3, b1: at its cap. A new IP in it evicts
	// the subnet's oldest silent, b1.
	tt.admit("c1", "10.0.0.3", 5, "b1", evictSilent, true, scopeSubnet)
	// If all of the IP's entries have spoken and are young, its next
	// socket is refused, though silent ones of others are there.
	tt.spoke("a2", "a3")
	tt.admit("a4", "10.0.0.1", 6, "", 0, false, scopeIP)
	// Global: x1, a2, a3, c1 + two more fill it; the next evicts the
	// oldest silent anywhere: x1.
	tt.admit("y1", "198.51.100.1", 7, "", 0, true, 0)
	tt.admit("m1", "", 8, "", 0, true, 0) // no IP: global scope only
	tt.admit("z1", "203.0.113.1", 9, "x1", evictSilent, true, scopeGlobal)
	// IPv6: the subnet is the /64, the IP the whole address.
	tt2 := newTableTest(t, pendingLimits{global: 10, perIP: 1, perSubnet: 2, slowAfter: time.Minute})
	tt2.admit("p", "2001:db8::1", 0, "", 0, true, 0)
	tt2.admit("q", "2001:db8::2", 1, "", 0, true, 0)
	tt2.admit("r", "2001:db8::3", 2, "p", evictSilent, true, scopeSubnet)
	tt2.admit("s", "2001:db8:0:1::1", 3, "", 0, true, 0)
	tt2.admit("t", "2001:db8:0:1::1", 4, "s", evictSilent, true, scopeIP)
}

// Entries not limited (exempt, or without IP) do not count in the
// per-IP and per-subnet scopes.
func TestPendingTableExempt(t *testing.T) {
	tt := newTableTest(t, pendingLimits{global: 3, perIP: 1, perSubnet: 1, slowAfter: time.Minute})
	tt.admit("a", "10.0.0.1", 0, "", 0, true, 0)
	ex := tt.entry("ex", "", 1)
	ex.ip = netip.MustParseAddr("10.0.0.1") // exempt: has an IP, not limited
	if _, _, ok := tt.tab.admit(ex, ex.start); !ok {
		t.Fatal("exempt entry refused")
	}
	tt.entries["ex"] = ex
	// a second limited socket from 10.0.0.1 evicts a, not ex.
	tt.admit("b", "10.0.0.1", 2, "a", evictSilent, true, scopeIP)
	// the global cap binds the exempt too.
	tt.admit("c", "192.0.2.1", 3, "", 0, true, 0)
	tt.admit("d", "198.51.100.1", 4, "ex", evictSilent, true, scopeGlobal)
}

// After an eviction the entry's goroutine learns it: spoke, admitted
// and release report false. Counts return to zero.
func TestPendingTableRelease(t *testing.T) {
	tt := newTableTest(t, pendingLimits{global: 1, perIP: 1, perSubnet: 1, slowAfter: time.Minute})
	tt.admit("a", "10.0.0.1", 0, "", 0, true, 0)
	tt.admit("b", "10.0.0.1", 1, "a", evictSilent, true, scopeIP)
	a, b := tt.entries["a"], tt.entries["b"]
	if tt.tab.spoke(a) || tt.tab.admitted(a) || tt.tab.release(a) {
		t.Error("evicted entry still reported in the table")
	}
	if !tt.tab.spoke(b) || !tt.tab.admitted(b) || !tt.tab.release(b) {
		t.Error("entry not in the table")
	}
	if tt.tab.release(b) {
		t.Error("second release reported true")
	}
	if tt.tab.len() != 0 || len(tt.tab.perIP) != 0 || len(tt.tab.perSubnet) != 0 || tt.tab.head != nil || tt.tab.tail != nil {
		t.Errorf("table not empty: %d, %v, %v", tt.tab.len(), tt.tab.perIP, tt.tab.perSubnet)
	}
}

func TestAddrKeys(t *testing.T) {
	for _, tc := range []struct {
		addr           net.Addr
		ip, sub, host  string
		hasIP, limited bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 5}, "10.1.2.3", "10.1.2.0/24", "10.1.2.3/32", true, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 5}, "10.1.2.3", "10.1.2.0/24", "10.1.2.3/32", true, true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3::4"), Port: 5, Zone: "eth0"}, "2001:db8:1:2:3::4", "2001:db8:1:2::/64", "2001:db8:1:2::/64", true, true},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}, "127.0.0.1", "127.0.0.0/24", "127.0.0.1/32", true, false},
		{MemoryAddr("mem-1"), "", "", "", false, false},
	} {
		ip, ok := remoteIP(tc.addr)
		if ok != tc.hasIP {
			t.Errorf("%v: has IP %v", tc.addr, ok)
			continue
		}
		if !ok {
			continue
		}
		if ip.String() != tc.ip || subnetOf(ip).String() != tc.sub || hostOf(ip).String() != tc.host {
			t.Errorf("%v: ip %v subnet %v host %v", tc.addr, ip, subnetOf(ip), hostOf(ip))
		}
		u := &upgrader{exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		if u.limited(ip) != tc.limited {
			t.Errorf("%v: limited %v", tc.addr, u.limited(ip))
		}
	}
	if got := prefixString(netip.MustParsePrefix("10.0.0.1/32")); got != "10.0.0.1" {
		t.Errorf("prefixString %q", got)
	}
}

func TestAddrLinks(t *testing.T) {
	host := netip.MustParsePrefix("10.0.0.1/32")
	none := newAddrLinks(-1)
	if none != nil || none.full(host) || none.count(host) != 0 {
		t.Fatal("unlimited addrLinks counts")
	}
	if r, ok := none.reserve(host); !ok {
		t.Fatal("unlimited reserve refused")
	} else {
		r()
	}
	a := newAddrLinks(2)
	r1, ok1 := a.reserve(host)
	r2, ok2 := a.reserve(host)
	_, ok3 := a.reserve(host)
	if !ok1 || !ok2 || ok3 || !a.full(host) || a.count(host) != 2 {
		t.Fatalf("reserve: %v %v %v full %v", ok1, ok2, ok3, a.full(host))
	}
	if other := netip.MustParsePrefix("10.0.0.2/32"); a.full(other) {
		t.Error("another host full")
	}
	r1()
	if a.full(host) || a.count(host) != 1 {
		t.Error("release did not count out")
	}
	r2()
	if len(a.n) != 0 {
		t.Errorf("counts left: %v", a.n)
	}
}

func TestReplayConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { a.Write([]byte("bcd")) }()
	r := newReplayConn(b, []byte("a"))
	if unwrapReplay(r) != net.Conn(r) {
		t.Error("unwrapped before the prefix was read")
	}
	buf := make([]byte, 4)
	if n, err := r.Read(buf[:0]); n != 0 || err != nil {
		t.Errorf("empty read: %d %v", n, err)
	}
	n, err := r.Read(buf)
	if n != 1 || err != nil || buf[0] != 'a' {
		t.Fatalf("first read %q %v", buf[:n], err)
	}
	n, err = r.Read(buf)
	if string(buf[:n]) != "bcd" || err != nil {
		t.Fatalf("second read %q %v", buf[:n], err)
	}
	if unwrapReplay(r) != b || unwrapReplay(b) != b {
		t.Error("not unwrapped once the prefix was read")
	}
	if r.RemoteAddr() != b.RemoteAddr() {
		t.Error("RemoteAddr not the conn's")
	}
}

func TestParseMarker(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code byte
		ok   bool
	}{
		{"PLNK\x01", 1, true},
		{"PLNK\x02rest", 2, true},
		{"PLNK", 0, false},
		{"PLM\x01\x05", 0, false},
		{"\x16\x03\x03\x00\x10", 0, false},
	} {
		code, ok := parseMarker([]byte(tc.in))
		if code != tc.code || ok != tc.ok {
			t.Errorf("parseMarker(%q) = %d %v", tc.in, code, ok)
		}
	}
}
