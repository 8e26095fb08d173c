package trim_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/trim"
)

var t0 = time.Unix(1_000_000, 0)

// id returns a peer ID whose bytes order as n does.
func id(n int) peer.ID {
	var p peer.ID
	p[0], p[1] = byte(n>>8), byte(n)
	return p
}

// old is a link opened well before any grace period used here.
func old(n int, prio float64) trim.Candidate {
	return trim.Candidate{Peer: id(n), Priority: prio, Inbound: true, Opened: t0.Add(-time.Hour)}
}

func peersOf(cands []trim.Candidate, idx []int) []int {
	out := make([]int, len(idx))
	for i, j := range idx {
		out[i] = int(cands[j].Peer[1]) | int(cands[j].Peer[0])<<8
	}
	return out
}

func TestVictimsLowestPriorityFirst(t *testing.T) {
	cands := []trim.Candidate{old(1, 50), old(2, 10), old(3, 90), old(4, 30), old(5, 70)}
	got := peersOf(cands, trim.Policy{Target: 2}.Victims(t0, cands, nil))
	if want := []int{2, 4, 1}; !slices.Equal(got, want) {
		t.Fatalf("victims %v, want %v (lowest priority first, down to 2)", got, want)
	}
}

func TestVictimsUnderTargetNone(t *testing.T) {
	cands := []trim.Candidate{old(1, 50), old(2, 10)}
	if got := (trim.Policy{Target: 2}).Victims(t0, cands, nil); len(got) != 0 {
		t.Fatalf("victims %v at the target", got)
	}
	if got := (trim.Policy{Target: -1}).Victims(t0, cands, nil); len(got) != 0 {
		t.Fatalf("victims %v with no target", got)
	}
}

// TestVictimsYoungDoNotDisplaceOld: a burst of newcomers in their grace
// period does not push out the established links: they are extra until
// they have shown their worth.
func TestVictimsYoungDoNotDisplaceOld(t *testing.T) {
	var cands []trim.Candidate
	for i := range 30 {
		cands = append(cands, old(i, 90))
	}
	for i := 100; i < 111; i++ {
		c := old(i, 99)
		c.Opened = t0.Add(-time.Second)
		cands = append(cands, c)
	}
	p := trim.Policy{Target: 30, GracePeriod: time.Minute}
	if got := p.Victims(t0, cands, nil); len(got) != 0 {
		t.Fatalf("victims %v: established links closed for newcomers", peersOf(cands, got))
	}
	// A minute on, the newcomers count, and the worst 11 of all go.
	for i := 30; i < 41; i++ {
		cands[i].Priority = float64(i - 30) // they turned out poor
	}
	got := peersOf(cands, p.Victims(t0.Add(time.Minute), cands, nil))
	if want := []int{100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110}; !slices.Equal(got, want) {
		t.Fatalf("victims %v, want %v", got, want)
	}
}

func TestVictimsNeverKeptOrYoung(t *testing.T) {
	kept := old(1, 0)
	kept.Keep = true
	young := old(2, 1)
	young.Opened = t0.Add(-30 * time.Second)
	justOld := old(3, 2)
	justOld.Opened = t0.Add(-time.Minute) // exactly the grace period: no longer young
	cands := []trim.Candidate{kept, young, justOld, old(4, 80), old(5, 70)}
	got := peersOf(cands, trim.Policy{Target: 1, GracePeriod: time.Minute}.Victims(t0, cands, nil))
	if want := []int{3, 5, 4}; !slices.Equal(got, want) {
		t.Fatalf("victims %v, want %v: kept and young links stay, the kept one counting toward the target", got, want)
	}
}

func TestVictimsOutboundFloor(t *testing.T) {
	var cands []trim.Candidate
	for i := range 6 { // outbound, the lowest priorities
		c := old(i, float64(i))
		c.Inbound = false
		cands = append(cands, c)
	}
	kept := old(6, 0)
	kept.Inbound, kept.Keep = false, true // counts toward the floor
	cands = append(cands, kept)
	for i := 10; i < 14; i++ {
		cands = append(cands, old(i, float64(100+i)))
	}
	got := trim.Policy{Target: 3, MinOutbound: 4}.Victims(t0, cands, nil)
	outLeft := 0
	for i, c := range cands {
		if !c.Inbound && !slices.Contains(got, i) {
			outLeft++
		}
	}
	if outLeft != 4 {
		t.Fatalf("%d outbound links left, want the floor, 4 (victims %v)", outLeft, peersOf(cands, got))
	}
	if want := []int{0, 1, 2, 10, 11, 12, 13}; !slices.Equal(peersOf(cands, got), want) {
		t.Fatalf("victims %v, want %v: outbound down to the floor, then inbound by priority", peersOf(cands, got), want)
	}
}

func TestVictimsInboundBound(t *testing.T) {
	var cands []trim.Candidate
	for i := range 4 {
		c := old(i, float64(i)) // outbound, lowest priorities
		c.Inbound = false
		cands = append(cands, c)
	}
	for i := 10; i < 16; i++ {
		cands = append(cands, old(i, float64(i)))
	}
	// No count target: only the inbound links above 3 go, lowest first.
	got := peersOf(cands, trim.Policy{Target: -1, MaxInbound: 3}.Victims(t0, cands, nil))
	if want := []int{10, 11, 12}; !slices.Equal(got, want) {
		t.Fatalf("victims %v, want %v", got, want)
	}
}

func TestVictimsGroupExcessFirst(t *testing.T) {
	// Group 1 is crowded (5 links) with the better priorities; group 2
	// has two links of low priority. With 2 places per group, group 1's
	// three weakest go before group 2's.
	group := func(mod func([]trim.Candidate)) []trim.Candidate {
		var cands []trim.Candidate
		for i := range 5 {
			c := old(i, float64(60+i))
			c.Group = 1
			cands = append(cands, c)
		}
		for i := 10; i < 12; i++ {
			c := old(i, float64(i))
			c.Group = 2
			cands = append(cands, c)
		}
		mod(cands)
		return cands
	}
	for _, tc := range []struct {
		name string
		mod  func([]trim.Candidate)
		want []int
	}{
		{"crowded group first", func([]trim.Candidate) {}, []int{0, 1, 2, 10}},
		// A kept link takes one of its group's places first.
		{"kept link", func(c []trim.Candidate) { c[4].Keep = true }, []int{0, 1, 2, 10}},
		// A young link too, and it does not count against the target.
		{"young link", func(c []trim.Candidate) { c[4].Opened = t0 }, []int{0, 1, 2}},
	} {
		cands := group(tc.mod)
		got := peersOf(cands, trim.Policy{Target: 3, MaxPerGroup: 2, GracePeriod: time.Minute}.Victims(t0, cands, nil))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: victims %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestVictimsTies(t *testing.T) {
	out := old(1, 5)
	out.Inbound = false
	olderIn := old(2, 5)
	olderIn.Opened = t0.Add(-2 * time.Hour)
	newerIn := old(3, 5)
	sameAge := old(4, 5)
	cands := []trim.Candidate{out, olderIn, newerIn, sameAge}
	got := peersOf(cands, trim.Policy{Target: 0}.Victims(t0, cands, nil))
	if want := []int{3, 4, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("victims %v, want %v: inbound before outbound, younger before older, then by ID", got, want)
	}
}

// TestVictimsDeterministic: the order of the snapshot does not change the
// choice, so a seeded simulation trims the same links on every run.
func TestVictimsDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cands []trim.Candidate
	for i := range 300 {
		c := old(i, float64(rng.IntN(20))) // many ties
		c.Inbound = rng.IntN(3) > 0
		c.Group = uint64(rng.IntN(7))
		c.Keep = rng.IntN(10) == 0
		c.Opened = t0.Add(-time.Duration(rng.IntN(5)) * time.Minute)
		cands = append(cands, c)
	}
	p := trim.Policy{Target: 100, MaxInbound: 60, MinOutbound: 20, MaxPerGroup: 25, GracePeriod: 90 * time.Second}
	want := peersOf(cands, p.Victims(t0, cands, nil))
	for range 5 {
		rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		if got := peersOf(cands, p.Victims(t0, cands, nil)); !slices.Equal(got, want) {
			t.Fatalf("shuffled snapshot: victims differ\n got %v\nwant %v", got, want)
		}
	}
}

// TestVictimsInvariants checks, over random snapshots, what every trim
// promises: no kept or young link closed, the outbound floor held, and
// the targets reached whenever enough links may go.
func TestVictimsInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	grace := time.Minute
	for round := range 500 {
		n := rng.IntN(60)
		cands := make([]trim.Candidate, n)
		for i := range cands {
			cands[i] = trim.Candidate{
				Peer: id(i), Priority: rng.NormFloat64() * 50, Inbound: rng.IntN(2) == 0,
				Opened: t0.Add(-time.Duration(rng.IntN(120)) * time.Second),
				Group:  uint64(rng.IntN(4)), Keep: rng.IntN(8) == 0,
			}
		}
		p := trim.Policy{Target: rng.IntN(50) - 5, MaxInbound: rng.IntN(30), MinOutbound: rng.IntN(10),
			MaxPerGroup: rng.IntN(10), GracePeriod: grace}
		victims := p.Victims(t0, cands, nil)
		closed := make(map[int]bool)
		var outLeft, inLeft, eligibleOutLeft, eligibleInLeft int
		for _, v := range victims {
			if closed[v] {
				t.Fatalf("round %d: victim %d twice", round, v)
			}
			closed[v] = true
			if c := cands[v]; c.Keep || t0.Sub(c.Opened) < grace {
				t.Fatalf("round %d: closed a kept or young link %+v", round, c)
			}
		}
		for i, c := range cands {
			if closed[i] {
				continue
			}
			eligible := !c.Keep && t0.Sub(c.Opened) >= grace
			if c.Inbound {
				inLeft++
				if eligible {
					eligibleInLeft++
				}
			} else {
				outLeft++
				if eligible {
					eligibleOutLeft++
				}
			}
		}
		outBefore := 0
		for _, c := range cands {
			if !c.Inbound {
				outBefore++
			}
		}
		closedOut := outBefore - outLeft
		if closedOut > 0 && outLeft < p.MinOutbound {
			t.Fatalf("round %d: outbound floor %d broken: %d left", round, p.MinOutbound, outLeft)
		}
		// Young links do not count against the targets.
		young, youngIn := 0, 0
		for _, c := range cands {
			if !c.Keep && t0.Sub(c.Opened) < grace {
				young++
				if c.Inbound {
					youngIn++
				}
			}
		}
		left := n - len(victims) - young
		inLeft -= youngIn
		if p.Target >= 0 && left > p.Target && (eligibleInLeft > 0 || (eligibleOutLeft > 0 && outLeft > p.MinOutbound)) {
			t.Fatalf("round %d: %d left over target %d with links that could go", round, left, p.Target)
		}
		if p.MaxInbound > 0 && inLeft > p.MaxInbound && eligibleInLeft > 0 {
			t.Fatalf("round %d: %d inbound left over %d with inbound links that could go", round, inLeft, p.MaxInbound)
		}
		if p.Target >= 0 && left < p.Target && (p.MaxInbound <= 0 || inLeft < p.MaxInbound) && len(victims) > 0 {
			// Nothing closed beyond what a target asked for.
			t.Fatalf("round %d: closed down to %d, below target %d, with no inbound bound to meet", round, left, p.Target)
		}
	}
}

func TestWatermarksDue(t *testing.T) {
	w := trim.Watermarks{High: 10, Low: 8, Silence: 10 * time.Second}
	if ok, _ := w.Due(t0, time.Time{}); !ok {
		t.Fatal("a first trim is not due")
	}
	if ok, wait := w.Due(t0.Add(4*time.Second), t0); ok || wait != 6*time.Second {
		t.Fatalf("Due 4 s after a trim = %v, %v; want false, 6s", ok, wait)
	}
	if ok, _ := w.Due(t0.Add(10*time.Second), t0); !ok {
		t.Fatal("a trim is not due once the silence period has passed")
	}
	if w.Over(10) || !w.Over(11) || (trim.Watermarks{}).Over(1<<20) {
		t.Fatal("Over is wrong")
	}
}

func TestWatermarksAdmit(t *testing.T) {
	w := trim.Watermarks{High: 10, Low: 8, Silence: 10 * time.Second}
	if !w.Admit(9, t0, t0) {
		t.Fatal("refused below high")
	}
	if w.Admit(10, t0.Add(time.Second), t0) {
		t.Fatal("admitted past high inside the silence period")
	}
	if !w.Admit(10, t0.Add(10*time.Second), t0) {
		t.Fatal("refused the link that starts a due trim")
	}
	if w.Admit(11, t0.Add(time.Hour), t0) {
		t.Fatal("admitted a second link past high")
	}
	if !(trim.Watermarks{}).Admit(1<<20, t0, t0) {
		t.Fatal("no watermarks refuse")
	}
}

// TestWatermarksBoundUnderFlood drives the rules as the manager does —
// arrivals admitted by Admit, a trim started by the arrival that passes
// High when one is Due, closing down to Low the links out of their grace
// period — with 500 dialers arriving in bursts, and checks the count
// never passes High by more than one link and does not stay above it.
func TestWatermarksBoundUnderFlood(t *testing.T) {
	w := trim.Watermarks{High: 100, Low: 80, Silence: 10 * time.Second}
	p := trim.Policy{Target: w.Low, GracePeriod: time.Minute}
	rng := rand.New(rand.NewPCG(5, 6))
	now := t0
	var links []trim.Candidate
	var last time.Time
	maxSeen, over := 0, time.Duration(0)
	next := 0
	trimNow := func() {
		last = now
		victims := p.Victims(now, links, nil)
		slices.Sort(victims)
		for i := len(victims) - 1; i >= 0; i-- {
			links = slices.Delete(links, victims[i], victims[i]+1)
		}
	}
	for step := range 3000 { // 100 ms steps: 5 minutes
		for range rng.IntN(40) { // a burst of dialers, each retrying forever
			if !w.Admit(len(links), now, last) {
				continue
			}
			links = append(links, trim.Candidate{Peer: id(next), Priority: rng.Float64() * 100, Inbound: true, Opened: now})
			next++
			if w.Over(len(links)) {
				if ok, _ := w.Due(now, last); ok {
					trimNow()
				}
			}
		}
		// The timer: a trim that was not due, or closed too little, retries.
		if w.Over(len(links)) {
			if ok, _ := w.Due(now, last); ok {
				trimNow()
			}
			over += 100 * time.Millisecond
		} else {
			over = 0
		}
		maxSeen = max(maxSeen, len(links))
		if over > p.GracePeriod+w.Silence {
			t.Fatalf("step %d: above high for %v", step, over)
		}
		now = now.Add(100 * time.Millisecond)
	}
	if maxSeen > w.High+1 {
		t.Fatalf("max count %d, want at most high+1 = %d", maxSeen, w.High+1)
	}
	t.Logf("max count %d (high %d); %d links admitted over 5 minutes", maxSeen, w.High, next)
}

func ExamplePolicy_Victims() {
	now := time.Unix(1_000_000, 0)
	cands := []trim.Candidate{
		{Peer: peer.ID{1}, Priority: trim.Priority(0.9, 0), Inbound: true, Opened: now.Add(-time.Hour)},
		{Peer: peer.ID{2}, Priority: trim.Priority(0.2, 0), Inbound: true, Opened: now.Add(-time.Hour)},
		{Peer: peer.ID{3}, Priority: trim.Priority(0.2, 50), Inbound: true, Opened: now.Add(-time.Hour)}, // tagged
		{Peer: peer.ID{4}, Priority: trim.Priority(0.1, 0), Inbound: true, Opened: now.Add(-time.Hour), Keep: true},
		{Peer: peer.ID{5}, Priority: trim.Priority(0.0, 0), Inbound: true, Opened: now}, // in its grace period
	}
	// Keep two besides the link in its grace period (which does not count).
	p := trim.Policy{Target: 2, GracePeriod: time.Minute}
	for _, i := range p.Victims(now, cands, nil) {
		fmt.Println("close", cands[i].Peer[0])
	}
	// Output:
	// close 2
	// close 3
}
