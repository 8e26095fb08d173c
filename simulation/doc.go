// Package simulation runs many real peerlink ConnectionManagers in one
// process over an in-memory network whose links and failures it
// controls, in virtual time when run inside a testing/synctest bubble,
// and measures how the managers behave.
//
// The pieces:
//
//   - Network: node i listens on Addr(i) with Transport(i), the memory
//     transport whose every raw conn passes under its handshake through
//     faultnet shapers with the figures of its directed link (latency,
//     bandwidth, bounded queue, and per-packet jitter in order), drawn
//     from a seed and known to the harness (Link), so that later measures can judge the managers'
//     choices against the truth. Faults: Degrade (a link slows from now
//     on, live connections included), Reset, BlackHole, Partition and
//     Heal.
//   - Topologies, seeded and pure: RandomRegular, SmallWorld, FullMesh.
//   - Scenario: a JSON-decodable description of a run (nodes, topology,
//     links, health settings, faults on the virtual clock, churn at a
//     rate); scenarios/ holds the shipped ones.
//   - Sim (Start, Run): one manager per node wired as the graph through
//     the public API (the lower-numbered end of each edge keeps the
//     other as a persistent peer), node crash (or power-off: its links
//     go silent first) and restart with the same identity, a trace of every connection event and fault, and a
//     Result: connectivity over time, reconnect times after restarts,
//     heals and resets, dead-link detection times, heap and goroutines
//     per node, and the trace's hash.
//   - Workloads (Scenario.Workload): each node runs an Agent on its
//     manager, through the public API only (SetStreamHandler,
//     OpenStream, SelectBest and Selection.Done): gossip forwarded to
//     the k peers the balancer picks (after GossipSpec.Validation, if
//     set) over one long-lived stream per peer and deduplicated by
//     message ID,
//     requests through SelectBest rotating P2C, highest score and random
//     from request to request (so that the three are judged on the same
//     run), bulk transfers at low priority, and hostile nodes (stream
//     flooders, squatters). An Agent knows peers only by ID, so that one
//     process running one node over TCP can run it too.
//   - Measures of the workloads, judged against the truth the harness
//     knows (Network.RTT, service times): delivery to every node of a
//     message's connected component, time to 50/90/99/100 % of it,
//     duplicates against flooding's (k−2)/2, the last delivery's hop,
//     request latency and errors by cause, how often each strategy
//     picked the truly fastest peer and its regret, each node's score of
//     its peers against their true latency, breaker openings, trims.
//     Default is the scenario cmd/peersim runs with no flags;
//     Options.Progress reports a run's state every virtual second.
//   - Past one process: RunNode runs one node over TCP and TLS 1.3 in
//     real time as a NodeConfig says (the workload through an Agent, its
//     metrics served, its log kept bounded) and returns a NodeResult;
//     Gather replays the logs of a run's nodes into the same measures,
//     a Result with what a real network can tell (no true latency).
//     cmd/peersim's node and local subcommands run them as processes.
//
// # Virtual time and repeatability
//
// Run a simulation inside synctest.Test and pass synctest.Wait as
// Options.Settle: minutes of simulated time then take a fraction of a
// second, and one seed gives the same topology, link figures, fault
// schedule, identities and managers' random draws. The harness applies
// faults only once everything due at their instant has run, and orders
// the trace by content rather than arrival, so the trace hash repeats
// from run to run and across GOMAXPROCS.
//
// What could still vary is what the managers themselves leave to
// goroutine order at one virtual instant; the shipped scenarios are run
// twice each in the tests to catch it. The trace holds the links'
// events, not the workloads': what a workload measures (which peer a
// pick chose when two picks raced at one instant) can vary a little from
// run to run of one seed.
//
// Every goroutine the harness starts ends with Close; Start and Close
// must run in the same bubble. yamux keeps a process-wide pool of timers:
// run bubbles one at a time and call runtime.GC twice before and after
// each (see the package tests' inBubble).
package simulation
