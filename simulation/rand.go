package simulation

import "time"

// instantSource is the random source the harness gives each manager
// (Config.Rand): every draw made at one virtual instant returns the same
// number, a hash of the seed, the node, its incarnation and the instant.
//
// Why not a seeded PCG: a manager makes its random choices (reconnect
// jitter, backoff jitter) from one source shared by its goroutines. When
// several of them draw at the same virtual instant, as the reconnect
// loops of all the links one health sweep declared dead do, the order in
// which goroutines of a synctest bubble run decides which loop gets
// which number, and two runs of one seed part ways. With draws that
// depend only on the instant, the order no longer matters: the trace
// repeats. The price is that a node's loops started at the same instant
// wait alike (they dial different peers, whose links then set them
// apart), and that a consumer needing two different numbers at one
// instant gets one; math/rand/v2's bounded draws retry on a rejected
// number, which here would repeat forever, with odds below n/2⁶⁴ for a
// bound n (5·10⁻¹¹ per draw for one second in nanoseconds).
type instantSource struct{ base uint64 }

func newInstantSource(seed uint64, node, inc int) instantSource {
	return instantSource{base: mix(seed ^ mix(streamNode<<56^uint64(node)<<20^uint64(inc)))}
}

// Uint64 implements rand.Source.
func (s instantSource) Uint64() uint64 { return mix(s.base ^ uint64(time.Now().UnixNano())) }
