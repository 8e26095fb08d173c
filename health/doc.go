// Package health tells live links from dead ones: links whose remote has
// gone silent without closing them (a crashed host, a dropped route, a
// NAT that forgot the mapping), which TCP alone may not notice for many
// minutes, while the manager keeps counting them and routing streams to
// them.
//
// It is pure logic plus one monitor loop, in the style of etcd's raft
// package: it does no I/O of its own. Every probe goes through the Target
// interface (the connection manager passes a mux session's PingContext and
// LastRead), and every decision is reported through hooks, so all of it
// is tested with fake targets in virtual time (testing/synctest).
//
// The pieces:
//
//   - State is one link's health record (the manager keeps one per link):
//     when it was last checked, errors seen since, the latency EWMA and
//     failure counts. NeedsCheck says, with no I/O, whether a link needs a
//     probe: one that has received bytes within IdleThreshold, and has had
//     no errors recorded (nor a failed check with nothing arriving after
//     it) since its last check, does not, so a busy link costs no probes;
//     a failing one is probed at every sweep. Observe records a probe's result and says, exactly
//     once, when FailureThreshold consecutive probes have failed.
//   - Check probes one target with Config.Timeout; CheckAll probes many
//     with at most MaxInFlight probes at once.
//   - Monitor sweeps the current links every Interval: the links that need
//     a check are probed by a small pool of workers (at most MaxInFlight
//     probes at once, however many links there are; there is no goroutine
//     per link), the results go to Observe, and a link declared dead goes
//     to MonitorConfig.OnDead, where the manager closes it.
//
// A link that goes silent is declared dead within Config.DetectionBound:
// with the defaults (Interval 10s, Timeout 5s, FailureThreshold 3) at most
// 55s after its last byte arrived, 35–45s in practice. A link on which
// bytes keep arriving is never probed at all.
package health
