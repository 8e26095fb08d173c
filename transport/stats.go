package transport

import "sync/atomic"

// Stats counts link establishment outcomes of one transport, over all its
// listeners and dials since it was created.
type Stats struct {
	InboundOK        uint64 // inbound links admitted (accepting verdict written)
	InboundFailed    uint64 // inbound handshake or verdict failed: timeout, bad peer, listener closed
	InboundRefused   uint64 // refused by our InterceptAccept or InterceptSecured
	InboundOverLimit uint64 // sockets closed at once because MaxPendingHandshakes were in flight
	InboundPending   int64  // inbound handshakes in flight now, admitted links waiting for Accept included

	OutboundOK            uint64 // dials that returned a Conn
	OutboundFailed        uint64 // dials that failed on the network, in the handshake or by ctx
	OutboundRefused       uint64 // dials refused by our InterceptDial or InterceptSecured
	OutboundRemoteRefused uint64 // dials refused by the listener's verdict
}

type counters struct {
	inOK, inFailed, inRefused, inOverLimit         atomic.Uint64
	inPending                                      atomic.Int64
	outOK, outFailed, outRefused, outRemoteRefused atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		InboundOK:             c.inOK.Load(),
		InboundFailed:         c.inFailed.Load(),
		InboundRefused:        c.inRefused.Load(),
		InboundOverLimit:      c.inOverLimit.Load(),
		InboundPending:        c.inPending.Load(),
		OutboundOK:            c.outOK.Load(),
		OutboundFailed:        c.outFailed.Load(),
		OutboundRefused:       c.outRefused.Load(),
		OutboundRemoteRefused: c.outRemoteRefused.Load(),
	}
}
