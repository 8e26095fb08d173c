package simulation

import (
	"errors"
	"reflect"
	"testing"
)

// checkSimple fails t unless g has sorted adjacency lists, no self-loop,
// no multi-edge and symmetric edges.
func checkSimple(t *testing.T, g Graph) {
	t.Helper()
	for i, a := range g.Adj {
		for k, j := range a {
			if j == i {
				t.Fatalf("self-loop at %d", i)
			}
			if j < 0 || j >= g.N {
				t.Fatalf("edge %d–%d leaves the graph", i, j)
			}
			if k > 0 && a[k-1] >= j {
				t.Fatalf("adjacency of %d not strictly increasing (multi-edge?): %v", i, a)
			}
			if !g.hasEdge(j, i) {
				t.Fatalf("edge %d→%d has no reverse", i, j)
			}
		}
	}
}

func TestRandomRegular(t *testing.T) {
	for _, tc := range []struct{ n, d int }{{10, 3}, {50, 8}, {1000, 8}, {9, 8}, {20, 0}, {64, 2}} {
		g, err := RandomRegular(tc.n, tc.d, 7)
		if err != nil {
			t.Fatalf("n=%d d=%d: %v", tc.n, tc.d, err)
		}
		checkSimple(t, g)
		for i := range g.N {
			if g.Degree(i) != tc.d {
				t.Fatalf("n=%d d=%d: node %d has degree %d", tc.n, tc.d, i, g.Degree(i))
			}
		}
		if got := len(g.Edges()); got != tc.n*tc.d/2 {
			t.Fatalf("n=%d d=%d: %d edges, want %d", tc.n, tc.d, got, tc.n*tc.d/2)
		}
	}
}

func TestRandomRegularConnectedWHP(t *testing.T) {
	// A random d-regular graph with d ≥ 3 is connected with probability
	// 1 − o(1); at n = 100, d = 4 a disconnected one has not been seen.
	for seed := range uint64(200) {
		g, err := RandomRegular(100, 4, seed)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Connected() {
			t.Fatalf("seed %d: disconnected", seed)
		}
	}
}

func TestRandomRegularSeeded(t *testing.T) {
	a, _ := RandomRegular(200, 8, 42)
	b, _ := RandomRegular(200, 8, 42)
	c, _ := RandomRegular(200, 8, 43)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different graphs")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same graph")
	}
}

func TestRandomRegularBadInput(t *testing.T) {
	for _, tc := range []struct{ n, d int }{{0, 0}, {5, 3}, {5, 5}, {5, -1}, {4, 7}} {
		if _, err := RandomRegular(tc.n, tc.d, 1); !errors.Is(err, ErrTopology) {
			t.Errorf("n=%d d=%d: err %v, want ErrTopology", tc.n, tc.d, err)
		}
	}
}

func TestSmallWorld(t *testing.T) {
	for _, beta := range []float64{0, 0.1, 0.5, 1} {
		g, err := SmallWorld(200, 8, beta, 3)
		if err != nil {
			t.Fatal(err)
		}
		checkSimple(t, g)
		if got := len(g.Edges()); got != 200*8/2 {
			t.Fatalf("beta %v: %d edges, want %d", beta, got, 800)
		}
		if !g.Connected() {
			t.Fatalf("beta %v: disconnected", beta)
		}
		if beta == 0 {
			for i := range g.N {
				if g.Degree(i) != 8 || !g.hasEdge(i, (i+4)%200) || g.hasEdge(i, (i+5)%200) {
					t.Fatalf("beta 0: node %d is not on the ring lattice: %v", i, g.Adj[i])
				}
			}
		}
	}
	// Rewiring moves about beta of the lattice's edges.
	g, _ := SmallWorld(1000, 8, 0.2, 5)
	moved := 0
	for _, e := range g.Edges() {
		if d := min(e[1]-e[0], e[0]+1000-e[1]); d > 4 {
			moved++
		}
	}
	if share := float64(moved) / 4000; share < 0.15 || share > 0.25 {
		t.Fatalf("%.3f of the edges rewired, want about 0.2", share)
	}
	a, _ := SmallWorld(300, 6, 0.3, 9)
	b, _ := SmallWorld(300, 6, 0.3, 9)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different graphs")
	}
	for _, tc := range []struct {
		n, k int
		beta float64
	}{{10, 3, 0.1}, {10, 10, 0.1}, {10, 4, -0.1}, {10, 4, 1.5}, {0, 0, 0}} {
		if _, err := SmallWorld(tc.n, tc.k, tc.beta, 1); !errors.Is(err, ErrTopology) {
			t.Errorf("%+v: err %v, want ErrTopology", tc, err)
		}
	}
}

func TestFullMesh(t *testing.T) {
	g, err := FullMesh(12)
	if err != nil {
		t.Fatal(err)
	}
	checkSimple(t, g)
	if len(g.Edges()) != 12*11/2 || !g.Connected() {
		t.Fatalf("%d edges", len(g.Edges()))
	}
	for _, n := range []int{0, MaxFullMesh + 1} {
		if _, err := FullMesh(n); !errors.Is(err, ErrTopology) {
			t.Fatalf("FullMesh(%d): %v", n, err)
		}
	}
}

func BenchmarkRandomRegular10k(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		if _, err := RandomRegular(10000, 8, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
}
