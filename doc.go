// Package peerlink manages a node's peer-to-peer links: one authenticated,
// multiplexed link per peer, streams over it with a protocol and a
// priority, and the limits, events and bookkeeping a validator, relay or
// gossip node needs around them.
//
// A ConnectionManager is the public face. It listens, keeps an address
// book, dials (one dial in flight per peer, however many callers wait on
// it), admits inbound links against its limits, resolves two peers
// dialing each other at once to a single link, dispatches inbound streams
// to the handler registered for their protocol, and publishes connected
// and disconnected events.
//
// The pieces it wires together live in subpackages: peer (IDs, identities,
// the sharded peer table), transport (TCP with mutual TLS 1.3, and an
// in-memory transport for tests and simulations) and mux (yamux sessions
// and prioritised streams).
package peerlink
