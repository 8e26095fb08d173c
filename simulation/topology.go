package simulation

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// ErrTopology is wrapped by every error a topology builder returns for
// parameters it cannot satisfy.
var ErrTopology = errors.New("simulation: bad topology")

// Topology names, as in Scenario.Topology.
const (
	TopologyRandomRegular = "random-regular"
	TopologySmallWorld    = "small-world"
	TopologyFullMesh      = "full-mesh"
)

// Graph is an undirected simple graph on nodes 0..N-1: no self-loops, no
// multi-edges. Adj[i] lists i's neighbours in increasing order.
type Graph struct {
	N   int
	Adj [][]int
}

func newGraph(n int) Graph {
	return Graph{N: n, Adj: make([][]int, n)}
}

// hasEdge reports whether i and j are adjacent. Linear in i's degree,
// which is small in every graph built here but the full mesh (which never
// asks).
func (g Graph) hasEdge(i, j int) bool { return slices.Contains(g.Adj[i], j) }

func (g Graph) addEdge(i, j int) {
	g.Adj[i] = append(g.Adj[i], j)
	g.Adj[j] = append(g.Adj[j], i)
}

func (g Graph) sortAdj() Graph {
	for _, a := range g.Adj {
		slices.Sort(a)
	}
	return g
}

// Edges returns every edge once, as {i, j} with i < j, in increasing
// order.
func (g Graph) Edges() [][2]int {
	var es [][2]int
	for i, a := range g.Adj {
		for _, j := range a {
			if i < j {
				es = append(es, [2]int{i, j})
			}
		}
	}
	return es
}

// Degree returns how many neighbours i has.
func (g Graph) Degree(i int) int { return len(g.Adj[i]) }

// Connected reports whether every node can reach every other (true for
// N ≤ 1).
func (g Graph) Connected() bool {
	if g.N <= 1 {
		return true
	}
	seen := make([]bool, g.N)
	stack := []int{0}
	seen[0] = true
	reached := 1
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range g.Adj[i] {
			if !seen[j] {
				seen[j] = true
				reached++
				stack = append(stack, j)
			}
		}
	}
	return reached == g.N
}

// Stream numbers for the seeded generators: each use of the seed gets
// its own PCG stream, so that adding a draw to one does not shift the
// others.
const (
	streamTopology = iota + 1
	streamLinks
	streamFaults
	streamIdentity
	streamNode // + node index × incarnations; keep last
)

func newRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// maxRegularRestarts bounds the restarts of RandomRegular's pairing.
// A restart happens when the last few free stubs can only pair into a
// self-loop or a multi-edge, which is rare (a handful per thousand
// builds at d = 8), so the bound is never reached in practice.
const maxRegularRestarts = 100

// RandomRegular returns a uniformly-ish random d-regular simple graph on
// n nodes, the same for the same seed.
//
// It pairs stubs as Steger and Wormald do: two free stubs chosen at
// random are joined when that makes neither a self-loop nor a
// multi-edge; when no such pair is left the build restarts. The plain
// configuration model (pair everything, reject the whole graph on any
// self-loop or multi-edge) is uniform but succeeds with probability
// about exp(−(d²−1)/4): once in ~7 million tries at d = 8. Steger–Wormald
// is asymptotically uniform for d up to n^(1/28) and close to it beyond,
// which is all a simulation topology needs.
//
// n·d must be even and 0 ≤ d < n.
func RandomRegular(n, d int, seed uint64) (Graph, error) {
	switch {
	case n < 1:
		return Graph{}, fmt.Errorf("%w: random-regular: %d nodes, want at least 1", ErrTopology, n)
	case d < 0 || d >= n:
		return Graph{}, fmt.Errorf("%w: random-regular: degree %d, want 0 ≤ degree < nodes (%d)", ErrTopology, d, n)
	case n*d%2 != 0:
		return Graph{}, fmt.Errorf("%w: random-regular: nodes × degree = %d × %d is odd", ErrTopology, n, d)
	}
	r := newRand(seed, streamTopology)
	for range maxRegularRestarts {
		if g, ok := pairStubs(n, d, r); ok {
			return g.sortAdj(), nil
		}
	}
	return Graph{}, fmt.Errorf("%w: random-regular: no simple %d-regular pairing of %d nodes after %d restarts", ErrTopology, d, n, maxRegularRestarts)
}

// pairStubs makes one Steger–Wormald attempt; false when it got stuck.
func pairStubs(n, d int, r *rand.Rand) (Graph, bool) {
	g := newGraph(n)
	for i := range g.Adj {
		g.Adj[i] = make([]int, 0, d)
	}
	stubs := make([]int, 0, n*d)
	for i := range n {
		for range d {
			stubs = append(stubs, i)
		}
	}
	suitable := func(a, b int) bool { return a != b && !g.hasEdge(a, b) }
	take := func(x, y int) { // remove stubs x and y (x ≠ y) by swapping with the tail
		if x < y {
			x, y = y, x
		}
		last := len(stubs) - 1
		stubs[x] = stubs[last]
		stubs = stubs[:last]
		last--
		stubs[y] = stubs[last]
		stubs = stubs[:last]
	}
	for len(stubs) > 0 {
		found := false
		// Random tries first: while many stubs are free almost every
		// pair is suitable.
		for range 64 {
			x, y := r.IntN(len(stubs)), r.IntN(len(stubs))
			if x != y && suitable(stubs[x], stubs[y]) {
				g.addEdge(stubs[x], stubs[y])
				take(x, y)
				found = true
				break
			}
		}
		if found {
			continue
		}
		// Few stubs left and most pairs unsuitable: choose uniformly
		// among the suitable pairs, or give up if there are none.
		var pairs [][2]int
		for x := range stubs {
			for y := x + 1; y < len(stubs); y++ {
				if suitable(stubs[x], stubs[y]) {
					pairs = append(pairs, [2]int{x, y})
				}
			}
		}
		if len(pairs) == 0 {
			return Graph{}, false
		}
		p := pairs[r.IntN(len(pairs))]
		g.addEdge(stubs[p[0]], stubs[p[1]])
		take(p[0], p[1])
	}
	return g, true
}

// SmallWorld returns a Watts–Strogatz small-world graph, the same for the
// same seed: a ring on which each node is joined to its k/2 nearest
// neighbours on either side, then each edge (i, i+j) has its far end moved
// with probability beta to a node chosen uniformly among those it would
// not duplicate an edge with. It keeps n·k/2 edges; degrees average k.
//
// k must be even with 0 ≤ k < n, and 0 ≤ beta ≤ 1.
func SmallWorld(n, k int, beta float64, seed uint64) (Graph, error) {
	switch {
	case n < 1:
		return Graph{}, fmt.Errorf("%w: small-world: %d nodes, want at least 1", ErrTopology, n)
	case k < 0 || k >= n || k%2 != 0:
		return Graph{}, fmt.Errorf("%w: small-world: degree %d, want an even number, 0 ≤ degree < nodes (%d)", ErrTopology, k, n)
	case !(beta >= 0 && beta <= 1):
		return Graph{}, fmt.Errorf("%w: small-world: rewiring probability %v, want 0 to 1", ErrTopology, beta)
	}
	r := newRand(seed, streamTopology)
	g := newGraph(n)
	for i := range n {
		for j := 1; j <= k/2; j++ {
			g.addEdge(i, (i+j)%n)
		}
	}
	for j := 1; j <= k/2; j++ {
		for i := range n {
			if r.Float64() >= beta {
				continue
			}
			old := (i + j) % n
			if len(g.Adj[i]) >= n-1 {
				continue // i is joined to everyone: nowhere to go
			}
			var to int
			for {
				to = r.IntN(n)
				if to != i && !g.hasEdge(i, to) {
					break
				}
			}
			g.Adj[i] = slices.DeleteFunc(g.Adj[i], func(x int) bool { return x == old })
			g.Adj[old] = slices.DeleteFunc(g.Adj[old], func(x int) bool { return x == i })
			g.addEdge(i, to)
		}
	}
	return g.sortAdj(), nil
}

// MaxFullMesh is the largest FullMesh: its n(n−1)/2 edges grow fast, and
// past 401 nodes a manager with the default MaxConnections (400) refuses
// links anyway (raise it with Options.Configure).
const MaxFullMesh = 4096

// FullMesh returns the complete graph on n nodes, 1 ≤ n ≤ MaxFullMesh.
func FullMesh(n int) (Graph, error) {
	if n < 1 || n > MaxFullMesh {
		return Graph{}, fmt.Errorf("%w: full-mesh: %d nodes, want 1 to %d", ErrTopology, n, MaxFullMesh)
	}
	g := newGraph(n)
	for i := range n {
		g.Adj[i] = make([]int, 0, n-1)
		for j := range n {
			if j != i {
				g.Adj[i] = append(g.Adj[i], j)
			}
		}
	}
	return g, nil
}
