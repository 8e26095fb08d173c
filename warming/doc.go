// Package warming decides which peers to have links to before they are
// needed: the policy behind the manager's keep-warm loop, kept apart from
// it as pure logic over snapshots, with the time and the random source
// handed in. It never dials; the manager carries its decisions out (dial,
// handshake, one ping to measure the round trip) and reports what became
// of them, as etcd's raft leaves I/O to its caller.
//
// # States
//
// Each peer is in one warming State: Cold (no warm link), Warming (an
// attempt is under way), Warm (a link is open, its handshake done and its
// round trip measured by a ping), or Failed (the last attempt failed).
// Next is the transition table; the manager applies it and publishes each
// change as an event:
//
//	Cold    --Start-->    Warming
//	Failed  --Start-->    Warming
//	Warming --Succeed-->  Warm
//	Warming --Fail-->     Failed    (the dial or the ping failed)
//	Warming --Abort-->    Cold      (cancelled, closing, own limits: nothing learnt of the peer)
//	Warm    --LinkLost--> Cold      (the warm link closed, for any reason)
//
// Every other pair leaves the state as it is.
//
// # Keep-warm
//
// Plan chooses, once per round, the MinWarm peers to keep warm (the kept
// set, Role Kept) out of the candidates, and which of them to start
// warming now:
//
//   - Exploitation: the kept slots go to the candidates of highest rank:
//     the quality score, plus Stickiness for a peer that is already warm
//     or warming (so that scores that differ by noise do not make the set
//     churn, and a link already there is preferred to a new dial).
//   - Exploration: a share of the slots, MinWarm × ExploreShare (its
//     fractional part drawn at random each round), is kept for peers
//     never tried (no link and no failed dial yet), drawn at random, so
//     that a newcomer gets a link and earns a score instead of ranking
//     on the neutral score of a peer nobody has measured. A newcomer
//     picked stays in its slot while its attempt runs; once warmed it is
//     tried and competes for the other slots on its score. With X
//     exploration slots and U newcomers, every newcomer is tried within
//     ⌈U/X⌉ rounds.
//   - Failed peers are candidates again only once their retry time has
//     passed (RetryAt: RetryInitial doubled per failure in a row, capped
//     at RetryMax), and never while their circuit breaker is open.
//   - Connection limits: a candidate without a link needs a new one; the
//     plan starts no more of those than the room it is given, counting
//     attempts already under way. Warming a peer already connected costs
//     a ping and no room.
//   - At most MaxConcurrent attempts run at once.
//
// # Preemptive scaling
//
// When the streams open over all links pass ScaleThreshold of their
// capacity (the links' stream limits summed), Plan warms extra peers
// (Role Extra), enough to bring the utilisation back to the threshold,
// never more than MaxExtra at a time. A kept peer that loses its slot
// while warm becomes an extra too, so that the links warming made beyond
// the kept set stay within MaxExtra. Extras are not kept: when the load
// falls, nothing here closes them; the manager's idle expiry does, since
// they are not in the kept set it exempts.
//
// A Plan depends on the candidates as a set, not on their order: ties go
// to the lower peer ID, and the random draw for exploration is one seed
// per round mixed with each peer's ID, so a seeded simulation repeats
// itself whatever order its map hands the candidates in.
//
// It imports nothing of peerlink's but peer.
package warming
