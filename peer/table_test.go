package peer

import (
	"crypto/ed25519"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestNewTableShards(t *testing.T) {
	tests := []struct{ in, want int }{
		{0, defaultShards},
		{-1, defaultShards},
		{1, 1},
		{2, 2},
		{3, 4},
		{64, 64},
		{65, 128},
		{1 << 20, maxShards},
	}
	for _, tt := range tests {
		tbl := NewTable[int](tt.in)
		if got := len(tbl.shards); got != tt.want {
			t.Errorf("NewTable(%d) has %d shards, want %d", tt.in, got, tt.want)
		}
		if tbl.mask != uint64(tt.want-1) {
			t.Errorf("NewTable(%d) has mask %#x, want %#x", tt.in, tbl.mask, tt.want-1)
		}
	}
}

func TestShardPadding(t *testing.T) {
	// A shard must fill whole 128-byte spans, or neighbouring shards'
	// locks share a cache line. The size does not depend on V.
	for name, size := range map[string]uintptr{
		"int":      unsafe.Sizeof(shard[int]{}),
		"string":   unsafe.Sizeof(shard[string]{}),
		"[64]byte": unsafe.Sizeof(shard[[64]byte]{}),
	} {
		if size%cacheLinePair != 0 {
			t.Errorf("shard[%s] is %d bytes, not a multiple of %d", name, size, cacheLinePair)
		}
	}
}

func TestTableOperations(t *testing.T) {
	ids := randomIDs(3, 10)
	a, b, c := ids[0], ids[1], ids[2]
	tbl := NewTable[string](4)

	if v, ok := tbl.Get(a); ok || v != "" {
		t.Errorf("Get on an empty table = %q, %v", v, ok)
	}
	if v, loaded := tbl.LoadOrStore(a, "a1"); loaded || v != "a1" {
		t.Errorf("LoadOrStore(new) = %q, %v; want a1, false", v, loaded)
	}
	if v, loaded := tbl.LoadOrStore(a, "a2"); !loaded || v != "a1" {
		t.Errorf("LoadOrStore(present) = %q, %v; want a1, true", v, loaded)
	}
	if v, loaded := tbl.LoadOrCreate(b, func() string { return "b1" }); loaded || v != "b1" {
		t.Errorf("LoadOrCreate(new) = %q, %v; want b1, false", v, loaded)
	}
	if v, loaded := tbl.LoadOrCreate(b, func() string { t.Error("create called for a present entry"); return "" }); !loaded || v != "b1" {
		t.Errorf("LoadOrCreate(present) = %q, %v; want b1, true", v, loaded)
	}
	tbl.Store(c, "c1")
	tbl.Store(c, "c2")
	if v, ok := tbl.Get(c); !ok || v != "c2" {
		t.Errorf("Get after two Stores = %q, %v; want c2, true", v, ok)
	}
	if n := tbl.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	tbl.Delete(a)
	tbl.Delete(a) // deleting an absent entry is fine
	if _, ok := tbl.Get(a); ok {
		t.Error("Get found a deleted entry")
	}
	if n := tbl.Len(); n != 2 {
		t.Errorf("Len after Delete = %d, want 2", n)
	}
	got := map[ID]string{}
	for id, v := range tbl.Range { // Range is an iter.Seq2
		got[id] = v
	}
	if len(got) != 2 || got[b] != "b1" || got[c] != "c2" {
		t.Errorf("Range saw %v, want b1 and c2", got)
	}
	if vs := tbl.Snapshot(); len(vs) != 2 {
		t.Errorf("Snapshot = %v, want 2 values", vs)
	}
}

func TestTableDeleteIf(t *testing.T) {
	id := randomIDs(1, 11)[0]
	type entry struct{ gen int }
	mine := &entry{1}
	newer := &entry{2}
	tests := []struct {
		name      string
		stored    *entry // nil: no entry
		pred      func(*entry) bool
		want      bool
		wantAfter *entry
	}{
		{"still mine", mine, func(e *entry) bool { return e == mine }, true, nil},
		{"replaced meanwhile", newer, func(e *entry) bool { return e == mine }, false, newer},
		{"absent", nil, func(*entry) bool { t.Error("pred called without an entry"); return true }, false, nil},
		{"always", newer, func(*entry) bool { return true }, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := NewTable[*entry](0)
			if tt.stored != nil {
				tbl.Store(id, tt.stored)
			}
			if got := tbl.DeleteIf(id, tt.pred); got != tt.want {
				t.Errorf("DeleteIf = %v, want %v", got, tt.want)
			}
			after, _ := tbl.Get(id)
			if after != tt.wantAfter {
				t.Errorf("entry after DeleteIf = %v, want %v", after, tt.wantAfter)
			}
			if wantLen := map[bool]int{true: 1, false: 0}[tt.wantAfter != nil]; tbl.Len() != wantLen {
				t.Errorf("Len = %d, want %d", tbl.Len(), wantLen)
			}
		})
	}
}

func TestTableLoadOrCreateOnce(t *testing.T) {
	const goroutines = 64
	ids := randomIDs(50, 12)
	tbl := NewTable[*int](2) // few shards: more goroutines meet on one lock
	for _, id := range ids {
		var creates atomic.Int32
		var created atomic.Int32 // callers told loaded == false
		results := make([]*int, goroutines)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				<-start
				v, loaded := tbl.LoadOrCreate(id, func() *int {
					creates.Add(1)
					return new(int)
				})
				if !loaded {
					created.Add(1)
				}
				results[g] = v
			})
		}
		close(start)
		wg.Wait()
		if n := creates.Load(); n != 1 {
			t.Fatalf("create called %d times, want 1", n)
		}
		if n := created.Load(); n != 1 {
			t.Fatalf("%d callers got loaded == false, want 1", n)
		}
		for g, v := range results {
			if v != results[0] {
				t.Fatalf("goroutine %d got a different entry than goroutine 0", g)
			}
		}
	}
}

// TestTableConcurrent is for -race: every operation at once, on a key set
// small enough that they collide.
func TestTableConcurrent(t *testing.T) {
	ids := randomIDs(64, 13)
	tbl := NewTable[int](4)
	const workers, ops = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range ops {
				id := ids[r.IntN(len(ids))]
				switch r.IntN(9) {
				case 0:
					tbl.Store(id, i)
				case 1:
					tbl.Get(id)
				case 2:
					tbl.Delete(id)
				case 3:
					tbl.LoadOrStore(id, i)
				case 4:
					tbl.LoadOrCreate(id, func() int { return i })
				case 5:
					tbl.DeleteIf(id, func(v int) bool { return v%2 == 0 })
				case 6:
					tbl.Range(func(ID, int) bool { return r.IntN(8) != 0 })
				case 7:
					tbl.Snapshot()
				case 8:
					if n := tbl.Len(); n < 0 || n > len(ids) {
						t.Errorf("Len = %d, outside [0, %d]", n, len(ids))
					}
				}
			}
		})
	}
	wg.Wait()

	// Quiet now: the counts must agree exactly.
	seen := 0
	tbl.Range(func(ID, int) bool { seen++; return true })
	if n := tbl.Len(); n != seen || n != len(tbl.Snapshot()) {
		t.Errorf("Len = %d, Range saw %d, Snapshot has %d", n, seen, len(tbl.Snapshot()))
	}
}

func TestTableRangeReentrant(t *testing.T) {
	ids := randomIDs(200, 14)
	tbl := NewTable[int](8)
	for i, id := range ids[:100] {
		tbl.Store(id, i)
	}
	// The callback writes to the very shard being walked; if Range held
	// the shard lock this would deadlock.
	added := 0
	tbl.Range(func(id ID, v int) bool {
		tbl.Delete(id)
		if added < 100 {
			tbl.Store(ids[100+added], 100+added)
			added++
		}
		tbl.Get(id)
		tbl.LoadOrStore(id, -1)
		tbl.DeleteIf(id, func(v int) bool { return v == -1 })
		return true
	})
	for _, id := range ids[:100] {
		if _, ok := tbl.Get(id); ok {
			t.Fatalf("entry %v survived its own Range callback's Delete", id.ShortString())
		}
	}
	// Entries stored during Range may or may not have been visited (and
	// so deleted); none may have been lost otherwise.
	if n := tbl.Len(); n > 100 {
		t.Errorf("Len = %d after Range, want at most 100", n)
	}
}

func TestTableRangeStops(t *testing.T) {
	tbl := NewTable[int](4)
	for i, id := range randomIDs(100, 15) {
		tbl.Store(id, i)
	}
	calls := 0
	tbl.Range(func(ID, int) bool { calls++; return calls < 3 })
	if calls != 3 {
		t.Errorf("Range called f %d times after it returned false on call 3", calls)
	}
	calls = 0
	for range tbl.Range {
		calls++
		if calls == 5 {
			break
		}
	}
	if calls != 5 {
		t.Errorf("range over Range ran %d times, want 5", calls)
	}
}

func TestTableGetAllocs(t *testing.T) {
	ids := randomIDs(1000, 16)
	tbl := NewTable[*int](0)
	for _, id := range ids {
		tbl.Store(id, new(int))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := tbl.Get(ids[i%len(ids)]); !ok {
			t.Fatal("present ID not found")
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("Get allocates %v times per call, want 0", allocs)
	}
}

// TestTableShardDistribution checks the premise that lets shardOf skip
// hashing: the first bytes of real ed25519 public keys are uniform.
func TestTableShardDistribution(t *testing.T) {
	const shards, perShard = 16, 300
	tbl := NewTable[struct{}](shards)
	var seed [32]byte
	r := rand.NewChaCha8(seed) // fixed: the verdict must not flake
	counts := make([]int, shards)
	for range shards * perShard {
		pub, _, err := ed25519.GenerateKey(r)
		if err != nil {
			t.Fatal(err)
		}
		counts[binary.LittleEndian.Uint64(pub[:8])&tbl.mask]++
	}
	// Pearson's chi-squared with 15 degrees of freedom: above 37.7 has
	// probability 0.001 for a uniform draw.
	var chi2 float64
	for _, n := range counts {
		d := float64(n - perShard)
		chi2 += d * d / perShard
	}
	if chi2 > 37.7 {
		t.Errorf("shard counts %v: chi-squared %.1f > 37.7, not uniform", counts, chi2)
	}
	t.Logf("shard counts %v, chi-squared %.1f", counts, chi2)
}

func BenchmarkTableGetParallel(b *testing.B) {
	for _, bc := range []struct {
		name   string
		shards int
	}{
		{"shards=1", 1},
		{"shards=default", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const peers = 100_000
			ids := randomIDs(peers, 20)
			tbl := NewTable[*int](bc.shards)
			for _, id := range ids {
				tbl.Store(id, new(int))
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine walks the IDs from its own random start,
				// so lookups go to random present IDs at no cost of a
				// random number per lookup.
				i := int(next.Add(1)*7919) % peers
				for pb.Next() {
					if _, ok := tbl.Get(ids[i]); !ok {
						b.Error("present ID not found")
						return
					}
					if i++; i == peers {
						i = 0
					}
				}
			})
		})
	}
}

func BenchmarkTableLoadOrStore(b *testing.B) {
	const peers = 100_000
	b.Run("present", func(b *testing.B) {
		ids := randomIDs(peers, 21)
		tbl := NewTable[*int](0)
		for _, id := range ids {
			tbl.Store(id, new(int))
		}
		v := new(int)
		var next atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)*7919) % peers
			for pb.Next() {
				if _, loaded := tbl.LoadOrStore(ids[i], v); !loaded {
					b.Error("present ID stored anew")
					return
				}
				if i++; i == peers {
					i = 0
				}
			}
		})
	})
	b.Run("absent", func(b *testing.B) {
		// Every call inserts a new peer; map growth is part of the cost.
		tbl := NewTable[*int](0)
		v := new(int)
		var next atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				var id ID
				// Spread counter values over the shards as a key would.
				binary.LittleEndian.PutUint64(id[:], next.Add(1)*0x9e3779b97f4a7c15)
				if _, loaded := tbl.LoadOrStore(id, v); loaded {
					b.Error("new ID found present")
					return
				}
			}
		})
	})
}
