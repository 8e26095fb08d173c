package transport

import "sync/atomic"

// Stats counts link establishment outcomes of one transport, over all its
// listeners and dials since it was created. Each inbound socket ends up
// in exactly one of the Inbound counters (InboundPending aside, a gauge).
type Stats struct {
	InboundOK      uint64 // inbound links admitted (accepting verdict written)
	InboundFailed  uint64 // inbound handshake or verdict failed: timeout, bad peer, listener closed
	InboundRefused uint64 // refused by our InterceptAccept or InterceptSecured
	// InboundOverLimit counts the sockets refused as busy: a cap on
	// pending handshakes (MaxPendingHandshakes, MaxPendingPerIP,
	// MaxPendingPerSubnet) was full and nothing in its scope could be
	// evicted. They were sent the busy marker (ErrListenerBusy).
	InboundOverLimit uint64
	// InboundAddrLimit counts the sockets and links refused because
	// their address had MaxInboundPerIP links already (ErrAddrConnLimit).
	InboundAddrLimit uint64
	// InboundEvictedSilent and InboundEvictedSlow count the pending
	// sockets closed to make room for a new one: silent ones had sent
	// nothing, slow ones had run longer than FirstByteTimeout.
	InboundEvictedSilent uint64
	InboundEvictedSlow   uint64
	// InboundFirstByteTimeout counts the sockets closed because they sent
	// nothing within FirstByteTimeout (when it is shorter than
	// HandshakeTimeout; else such a socket is InboundFailed, as a
	// handshake timeout).
	InboundFirstByteTimeout uint64
	InboundPending          int64 // inbound sockets pending now, admitted links waiting for Accept included

	OutboundOK            uint64 // dials that returned a Conn
	OutboundFailed        uint64 // dials that failed on the network, in the handshake or by ctx
	OutboundRefused       uint64 // dials refused by our InterceptDial or InterceptSecured
	OutboundRemoteRefused uint64 // dials refused by the listener: its verdict, or its busy or address-limit marker
}

type counters struct {
	inOK, inFailed, inRefused, inOverLimit         atomic.Uint64
	inAddrLimit, inEvictedSilent, inEvictedSlow    atomic.Uint64
	inFirstByteTimeout                             atomic.Uint64
	inPending                                      atomic.Int64
	outOK, outFailed, outRefused, outRemoteRefused atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		InboundOK:               c.inOK.Load(),
		InboundFailed:           c.inFailed.Load(),
		InboundRefused:          c.inRefused.Load(),
		InboundOverLimit:        c.inOverLimit.Load(),
		InboundAddrLimit:        c.inAddrLimit.Load(),
		InboundEvictedSilent:    c.inEvictedSilent.Load(),
		InboundEvictedSlow:      c.inEvictedSlow.Load(),
		InboundFirstByteTimeout: c.inFirstByteTimeout.Load(),
		InboundPending:          c.inPending.Load(),
		OutboundOK:              c.outOK.Load(),
		OutboundFailed:          c.outFailed.Load(),
		OutboundRefused:         c.outRefused.Load(),
		OutboundRemoteRefused:   c.outRemoteRefused.Load(),
	}
}
