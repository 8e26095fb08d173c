// Package balancer picks one peer out of a set of candidates: the policy
// behind the manager's SelectBest, kept apart from it as pure logic.
//
// The manager builds a []Candidate snapshot from atomic loads (score,
// load, latency, health, breaker state) and hands it to a Strategy; the
// strategy returns the index of the candidate it picked. A strategy takes
// no lock of the manager's, never touches a socket, and does not allocate
// when it picks, so it can sit on the hot path of every request.
//
// # The eligibility rule
//
// Every strategy skips candidates that are unhealthy (Healthy == false)
// or whose circuit is open (CircuitOpen == true). If no candidate is
// eligible — including an empty slice — Pick returns ErrNoCandidate. No
// strategy ever falls back to an unhealthy peer or an open circuit: the
// caller decides what to do (wait, dial, fail the request), since only it
// knows whether a degraded peer is better than none.
//
// # Strategies
//
//   - RoundRobin: the next eligible candidate after a shared counter.
//   - LeastLoaded: the lowest Load over the whole slice.
//   - P2C: two random eligible candidates, the one of lower peak-EWMA
//     cost (latency × (load + 1), penalised by a low score) wins; or
//     d of them (P2COptions.Choices), every one when d ≥ their number.
//   - LeastLoadedOfTwo: two random eligible candidates, the lower Load wins.
//   - WeightedRandom: random, with probability proportional to Score.
//   - HighestScore: the highest Score over the whole slice.
//   - Rendezvous: highest-random-weight hashing of a key, so that a key
//     keeps its peer while that peer stays eligible.
//
// All strategies are safe for concurrent use. The random ones draw from a
// counter-based splitmix64 generator: one atomic add per draw, no lock.
// Given a seed, a single goroutine sees the same sequence on every run,
// so a simulation repeats itself; across goroutines the sequence is the
// same but which goroutine gets which draw is up to the scheduler.
//
// Strategies that scan (LeastLoaded, WeightedRandom, HighestScore,
// Rendezvous) are O(n) in the number of candidates; RoundRobin, P2C and
// LeastLoadedOfTwo are O(1) expected when most candidates are eligible
// (P2C with d choices: O(d)).
// Those three also pick from a Set (SetPicker), which builds a candidate
// only when the strategy reads it: a caller with thousands of peers then
// loads two or three of them per pick instead of all (PickFrom chooses
// the way for any Strategy).
package balancer
