// Package trim is the policy that keeps a node's link count inside its
// budget: which links to close when there are too many, when a trim may
// run, whether a new inbound link may come in meanwhile, and how tag
// values that decay with time are computed. It is pure logic: it reads
// no clock (every call takes now), starts no goroutine and touches no
// socket. The manager (package peerlink) snapshots its links into
// Candidates, asks Policy.Victims which to close, and closes them.
//
// # Priority
//
// A link's priority is ScorePoints × the peer's quality score (in [0, 1])
// plus the sum of the peer's tag values (Priority). A tag worth 10 thus
// weighs as much as a tenth of the score: quality decides unless the
// application says otherwise, which is the reverse of go-libp2p's
// connection manager, whose tags alone decide (and which Prysm and ssv
// turned off to trim by their own scores).
//
// # Victims
//
// Victims closes links until at most Target remain (and at most
// MaxInbound of them inbound), never one marked Keep (a protected or
// persistent peer) nor one opened less than GracePeriod ago, and never an
// outbound link while MinOutbound or fewer remain: outbound links are
// the ones this node chose, which an attacker cannot fill. Links in
// their grace period do not count against the targets either, as in
// go-libp2p: a burst of newcomers, which nothing may close yet, would
// otherwise push out the links that have had time to show their worth,
// the attacker's newest identities taking the place of the node's best
// peers. They count once their grace period is over. Among the links
// that may go, in order:
//
//  1. links beyond MaxPerGroup in their network group (a /24, or /64 for
//     IPv6) go first: in each group the links that stay anyway (Keep, or
//     in their grace period) take the group's places first, then the
//     highest priorities; the others are its excess. A subnet that
//     crowds in cannot push out the peers of a subnet that did not;
//  2. then the lowest priority first;
//  3. at equal priority an inbound link before an outbound one, a
//     younger link before an older one (a long-standing link has shown
//     more than a new one), then by peer ID, so that the choice is the
//     same on every run.
//
// # Watermarks
//
// Past High links the manager trims down to Low, at most once per
// Silence. So that the count never stays above High however fast inbound
// links arrive, an inbound link that would take the count past High is
// admitted only when a trim may start at once (Watermarks.Admit): it
// is the one that starts the trim. Every other inbound link is refused
// while the count is at High or above (the remote learns why), so the
// count passes High by at most one inbound link, and the node's own
// dials. This is back pressure: go-libp2p admitted every link and
// trimmed after, and a node with a high water mark of 5000 held 15,000.
// A trim that leaves the count above High (its newest links being in
// their grace period) is retried every Silence, so the count is back at
// High at most GracePeriod + Silence after it passed it.
//
// # Decaying tags
//
// A decaying tag's value falls by a DecayFunc every interval and rises
// by a BumpFunc when bumped, as go-libp2p's decaying tags do, but it is
// computed lazily: DecayingValue stores the value and the start of its
// current interval, and Decay.Value applies the whole intervals that
// have passed when the value is read. No timer runs per tag or per peer.
package trim
