package peerlink

import (
	"errors"
	"fmt"

	"github.com/peerlink/peerlink/mux"
)

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("peerlink: connection manager closed")

	// ErrInvalidConfig is wrapped by New's error; the message names the
	// field that is wrong.
	ErrInvalidConfig = errors.New("peerlink: invalid config")

	// ErrConnectionLimit is returned when Config.MaxConnections links are
	// already open. Inbound links over the limit are refused during their
	// handshake, and the dialer is told why.
	ErrConnectionLimit = errors.New("peerlink: connection limit reached")

	// ErrInboundLimit is the reason inbound links over
	// Config.MaxInboundConnections are refused.
	ErrInboundLimit = errors.New("peerlink: inbound connection limit reached")

	// ErrNoAddresses is returned by Connect for a peer whose address the
	// manager does not know.
	ErrNoAddresses = errors.New("peerlink: no known address for peer")

	// ErrDialSelf is returned when asked to connect to the node's own ID.
	ErrDialSelf = errors.New("peerlink: cannot connect to self")

	// ErrNotConnected is returned for a peer with no open link.
	ErrNotConnected = errors.New("peerlink: peer not connected")

	// ErrInvalidPeer is returned for an AddrInfo that names no peer or has
	// an empty address.
	ErrInvalidPeer = errors.New("peerlink: invalid peer")

	// ErrShuttingDown is returned by OpenStream, Connect and the other
	// calls that would start something once Shutdown has begun.
	ErrShuttingDown = errors.New("peerlink: connection manager shutting down")

	// ErrNoLink is returned by OpenStream with a WithNoDial context when
	// the peer has no open link. It wraps ErrNotConnected.
	ErrNoLink = fmt.Errorf("%w (no open link, and dialing not allowed)", ErrNotConnected)

	// ErrGoAway is returned by OpenStream when the peer has said that it
	// is going away (its Shutdown): the link carries the streams in flight
	// but no new ones. It is mux.ErrGoAway.
	ErrGoAway = mux.ErrGoAway

	// ErrStreamLimit is returned by OpenStream when the peer's link already
	// carries Config.MaxStreamsPerPeer streams. It is mux.ErrStreamLimit,
	// which is also what an opener sees when the remote refuses a stream
	// for the same reason.
	ErrStreamLimit = mux.ErrStreamLimit
)
