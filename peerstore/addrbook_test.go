package peerstore_test

import (
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/peerlink/peerlink/peerstore"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestSourceString(t *testing.T) {
	for src, want := range map[peerstore.Source]string{
		peerstore.SourceManual:     "manual",
		peerstore.SourcePersistent: "persistent",
		peerstore.SourceDialed:     "dialed",
		peerstore.SourceInbound:    "inbound",
		peerstore.SourceDiscovery:  "discovery",
		0:                          "Source(0)",
		42:                         "Source(42)",
	} {
		if got := src.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(src), got, want)
		}
	}
}

func TestAddrBookZeroValue(t *testing.T) {
	var b peerstore.AddrBook
	b.Succeeded("x", t0)
	b.Failed("x")
	if b.Len() != 0 || b.Addrs() != nil || b.DialOrder(t0) != nil || b.HasDialable(t0) || b.Remove("x") || b.Expire(t0) != 0 {
		t.Error("zero AddrBook is not empty")
	}
}

// op is one call on an AddrBook at t0+at.
type op struct {
	kind string // "add", "ok" (Succeeded), "fail"
	addr string
	src  peerstore.Source
	ttl  time.Duration
	at   time.Duration
}

func add(addr string, src peerstore.Source, ttl, at time.Duration) op {
	return op{kind: "add", addr: addr, src: src, ttl: ttl, at: at}
}
func succeeded(addr string, at time.Duration) op { return op{kind: "ok", addr: addr, at: at} }
func failed(addr string) op                      { return op{kind: "fail", addr: addr} }

func apply(b *peerstore.AddrBook, ops []op) {
	for _, o := range ops {
		switch o.kind {
		case "add":
			b.Add(o.addr, o.src, o.ttl, at(o.at))
		case "ok":
			b.Succeeded(o.addr, at(o.at))
		case "fail":
			b.Failed(o.addr)
		}
	}
}

func TestAddrBookAdd(t *testing.T) {
	const a = "192.0.2.1:26656"
	var never time.Time
	const (
		manual     = peerstore.SourceManual
		persistent = peerstore.SourcePersistent
		dialed     = peerstore.SourceDialed
		inbound    = peerstore.SourceInbound
		discovery  = peerstore.SourceDiscovery
	)
	for _, tc := range []struct {
		name string
		ops  []op
		want peerstore.Addr
	}{
		{"ttl", []op{add(a, discovery, time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: discovery, Added: t0, Expires: at(time.Hour)}},
		{"no ttl never expires", []op{add(a, discovery, 0, 0)},
			peerstore.Addr{Addr: a, Source: discovery, Added: t0, Expires: never}},
		{"negative ttl never expires", []op{add(a, discovery, -time.Second, 0)},
			peerstore.Addr{Addr: a, Source: discovery, Added: t0, Expires: never}},
		{"persistent never expires", []op{add(a, persistent, time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: persistent, Added: t0, Expires: never}},
		{"refresh extends", []op{add(a, discovery, 10*time.Minute, 0), add(a, discovery, 10*time.Minute, 5*time.Minute)},
			peerstore.Addr{Addr: a, Source: discovery, Added: t0, Expires: at(15 * time.Minute)}},
		{"longer ttl wins", []op{add(a, discovery, time.Hour, 0), add(a, discovery, 10*time.Minute, time.Minute)},
			peerstore.Addr{Addr: a, Source: discovery, Added: t0, Expires: at(time.Hour)}},
		{"never wins over ttl", []op{add(a, manual, 0, 0), add(a, discovery, time.Hour, time.Minute)},
			peerstore.Addr{Addr: a, Source: manual, Added: t0, Expires: never}},
		{"ttl then never", []op{add(a, discovery, time.Hour, 0), add(a, discovery, 0, time.Minute)},
			peerstore.Addr{Addr: a, Source: discovery, Added: t0, Expires: never}},
		{"source upgrades", []op{add(a, discovery, time.Hour, 0), add(a, dialed, time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: dialed, Added: t0, Expires: at(time.Hour)}},
		{"inbound upgraded by a successful dial", []op{add(a, inbound, time.Hour, 0), add(a, dialed, 2*time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: dialed, Added: t0, Expires: at(2 * time.Hour)}},
		{"source never downgrades", []op{add(a, manual, time.Hour, 0), add(a, discovery, time.Hour, 0), add(a, inbound, time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: manual, Added: t0, Expires: at(time.Hour)}},
		{"persistent upgrade clears expiry", []op{add(a, discovery, time.Hour, 0), add(a, persistent, time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: persistent, Added: t0, Expires: never}},
		{"persistent stays unexpiring", []op{add(a, persistent, 0, 0), add(a, dialed, time.Hour, 0)},
			peerstore.Addr{Addr: a, Source: persistent, Added: t0, Expires: never}},
		{"success and failures", []op{add(a, dialed, 0, 0), failed(a), succeeded(a, time.Second), failed(a), failed(a)},
			peerstore.Addr{Addr: a, Source: dialed, Added: t0, LastSuccess: at(time.Second), Failures: 2}},
		{"expired is added afresh", []op{add(a, dialed, time.Minute, 0), succeeded(a, 0), failed(a), add(a, discovery, time.Minute, 2*time.Minute)},
			peerstore.Addr{Addr: a, Source: discovery, Added: at(2 * time.Minute), Expires: at(3 * time.Minute)}},
		{"unknown address ignored", []op{add(a, dialed, 0, 0), succeeded("elsewhere", time.Second), failed("elsewhere")},
			peerstore.Addr{Addr: a, Source: dialed, Added: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b peerstore.AddrBook
			apply(&b, tc.ops)
			got := b.Addrs()
			if len(got) != 1 || !equalAddr(got[0], tc.want) {
				t.Errorf("Addrs() = %+v, want [%+v]", got, tc.want)
			}
		})
	}
}

func equalAddr(x, y peerstore.Addr) bool {
	return x.Addr == y.Addr && x.Source == y.Source && x.Added.Equal(y.Added) &&
		x.Expires.Equal(y.Expires) && x.LastSuccess.Equal(y.LastSuccess) && x.Failures == y.Failures
}

func TestAddrBookAddInvalidSourcePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Add with Source(0) did not panic")
		}
	}()
	var b peerstore.AddrBook
	b.Add("x", 0, 0, t0)
}

// TestAddrBookDoesNotRetainCallerMemory checks that Add copies the
// address, so a record does not pin the message it was parsed from.
func TestAddrBookDoesNotRetainCallerMemory(t *testing.T) {
	msg := "addrs: 192.0.2.1:26656 and more"
	addr := msg[7:22]
	var b peerstore.AddrBook
	b.Add(addr, peerstore.SourceDiscovery, 0, t0)
	kept := b.Addrs()[0].Addr
	if kept != addr {
		t.Fatalf("kept %q, want %q", kept, addr)
	}
	if unsafe.StringData(kept) == unsafe.StringData(addr) {
		t.Error("AddrBook kept the caller's string memory")
	}
}

func TestAddrBookEvict(t *testing.T) {
	const (
		manual    = peerstore.SourceManual
		dialed    = peerstore.SourceDialed
		inbound   = peerstore.SourceInbound
		discovery = peerstore.SourceDiscovery
	)
	// fill adds MaxAddrs addresses a0, a1, ... of src, one a second.
	fill := func(src peerstore.Source, ttl time.Duration) []op {
		var ops []op
		for i := range peerstore.MaxAddrs {
			ops = append(ops, add(name(i), src, ttl, time.Duration(i)*time.Second))
		}
		return ops
	}
	replace := func(ops []op, i int, o op) []op {
		ops = slices.Clone(ops)
		ops[i] = o
		return ops
	}
	for _, tc := range []struct {
		name    string
		ops     []op
		newcome op
		evicted string // "" if the newcomer is not added
	}{
		{"oldest of one source", fill(discovery, 0), add("new", discovery, 0, time.Hour), "a0"},
		{"least trusted first", replace(fill(manual, 0), 7, add("a7", discovery, 0, 7*time.Second)), add("new", manual, 0, time.Hour), "a7"},
		{"inbound before discovery", replace(replace(fill(discovery, 0), 3, add("a3", inbound, 0, 3*time.Second)), 9, add("a9", inbound, 0, 9*time.Second)), add("new", discovery, 0, time.Hour), "a3"},
		{"expired before less trusted", replace(fill(discovery, 0), 5, add("a5", manual, time.Minute, 5*time.Second)), add("new", dialed, 0, time.Hour), "a5"},
		{"newcomer least trusted is dropped", fill(manual, 0), add("new", discovery, 0, time.Hour), ""},
		{"newcomer inbound is dropped", fill(discovery, 0), add("new", inbound, 0, time.Hour), ""},
		{"all expired: oldest", fill(discovery, time.Minute), add("new", inbound, 0, time.Hour), "a0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b peerstore.AddrBook
			apply(&b, tc.ops)
			apply(&b, []op{tc.newcome})
			if b.Len() != peerstore.MaxAddrs {
				t.Fatalf("Len() = %d, want MaxAddrs", b.Len())
			}
			var have []string
			for _, a := range b.Addrs() {
				have = append(have, a.Addr)
			}
			var want []string
			for _, o := range tc.ops {
				if o.addr != tc.evicted {
					want = append(want, o.addr)
				}
			}
			if tc.evicted != "" {
				want = append(want, "new")
			}
			slices.Sort(have)
			slices.Sort(want)
			if !slices.Equal(have, want) {
				t.Errorf("book holds %v, want %v", have, want)
			}
		})
	}
}

func name(i int) string { return "a" + strconv.Itoa(i) }

func TestAddrBookDialOrder(t *testing.T) {
	const (
		manual     = peerstore.SourceManual
		persistent = peerstore.SourcePersistent
		dialed     = peerstore.SourceDialed
		inbound    = peerstore.SourceInbound
		discovery  = peerstore.SourceDiscovery
	)
	now := 10 * time.Minute
	for _, tc := range []struct {
		name string
		ops  []op
		want []string
	}{
		{"by trust", []op{add("disc", discovery, 0, 0), add("man", manual, 0, 0), add("pers", persistent, 0, 0), add("dial", dialed, 0, 0)},
			[]string{"pers", "man", "dial", "disc"}},
		{"inbound never", []op{add("in", inbound, 0, 0), add("disc", discovery, 0, 0)},
			[]string{"disc"}},
		{"only inbound", []op{add("in", inbound, 0, 0)}, nil},
		{"expired left out", []op{add("old", manual, time.Minute, 0), add("disc", discovery, time.Hour, 0), add("edge", manual, now, 0)},
			[]string{"disc"}},
		{"fewer failures first", []op{add("x", discovery, 0, 0), add("y", discovery, 0, 0), failed("x"), failed("x"), failed("y")},
			[]string{"y", "x"}},
		{"trust before failures", []op{add("man", manual, 0, 0), add("disc", discovery, 0, 0), failed("man")},
			[]string{"man", "disc"}},
		{"newest first", []op{add("old", discovery, 0, 0), add("new", discovery, 0, time.Minute), add("same", discovery, 0, 0)},
			[]string{"new", "old", "same"}},
		{"last successful first", []op{add("pers", persistent, 0, 0), add("disc", discovery, 0, 0), succeeded("disc", time.Minute)},
			[]string{"disc", "pers"}},
		{"latest success first", []op{add("x", dialed, 0, 0), add("y", dialed, 0, time.Second), add("z", discovery, 0, 0),
			succeeded("y", time.Minute), succeeded("z", 2*time.Minute), succeeded("x", 3*time.Minute)},
			[]string{"x", "y", "z"}},
		{"success then failure loses the lead", []op{add("pers", persistent, 0, 0), add("disc", discovery, 0, 0), succeeded("disc", time.Minute), failed("disc")},
			[]string{"pers", "disc"}},
		{"success of an undialable address ignored", []op{add("in", inbound, 0, 0), add("man", manual, 0, 0), add("disc", discovery, 0, 0), succeeded("in", time.Minute)},
			[]string{"man", "disc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b peerstore.AddrBook
			apply(&b, tc.ops)
			got := b.DialOrder(at(now))
			if !slices.Equal(got, tc.want) {
				t.Errorf("DialOrder = %q, want %q", got, tc.want)
			}
			if has := b.HasDialable(at(now)); has != (len(tc.want) > 0) {
				t.Errorf("HasDialable = %v, DialOrder = %q", has, got)
			}
		})
	}
}

func TestAddrBookExpire(t *testing.T) {
	var b peerstore.AddrBook
	b.Add("a", peerstore.SourceDiscovery, time.Minute, t0)
	b.Add("b", peerstore.SourceDiscovery, 2*time.Minute, t0)
	b.Add("c", peerstore.SourceManual, 0, t0)
	b.Add("d", peerstore.SourcePersistent, time.Second, t0)

	if n := b.Expire(at(59 * time.Second)); n != 0 {
		t.Errorf("Expire before any TTL ends dropped %d", n)
	}
	// An address expires at t0+TTL exactly.
	if n := b.Expire(at(time.Minute)); n != 1 || b.Len() != 3 {
		t.Errorf("Expire at the first TTL dropped %d, Len %d; want 1, 3", n, b.Len())
	}
	if n := b.Expire(at(time.Hour)); n != 1 || b.Len() != 2 {
		t.Errorf("Expire long after dropped %d, Len %d; want 1, 2", n, b.Len())
	}
	if got := b.DialOrder(at(time.Hour)); !slices.Equal(got, []string{"d", "c"}) {
		t.Errorf("left %q, want the unexpiring d, c", got)
	}
}

func TestAddrBookRemove(t *testing.T) {
	var b peerstore.AddrBook
	b.Add("a", peerstore.SourceDiscovery, 0, t0)
	b.Add("b", peerstore.SourceDiscovery, 0, t0)
	if !b.Remove("a") || b.Remove("a") || b.Len() != 1 {
		t.Fatal("Remove did not remove exactly once")
	}
	if !b.Remove("b") || b.Len() != 0 || b.Addrs() != nil {
		t.Error("book not empty after removing everything")
	}
	b.Add("c", peerstore.SourceDiscovery, 0, t0)
	if b.Len() != 1 {
		t.Error("book unusable after being emptied")
	}
}

func TestAddrBookAddrsIsCopy(t *testing.T) {
	var b peerstore.AddrBook
	b.Add("a", peerstore.SourceDiscovery, 0, t0)
	addrs := b.Addrs()
	addrs[0].Addr = "changed"
	addrs[0].Failures = 9
	if got := b.Addrs()[0]; got.Addr != "a" || got.Failures != 0 {
		t.Errorf("changing Addrs' result changed the book: %+v", got)
	}
}
