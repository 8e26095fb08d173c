// Package mux multiplexes streams over one peer-to-peer link: a yamux
// session per link, with a protocol name and a priority on every stream.
//
// NewSession runs over any net.Conn whose two peer IDs it is told (the
// transport establishes them); the side that dialed is the yamux client.
// OpenStream opens a stream without a round trip: a short header
//
//	[1] version = 1
//	[1] priority (0 low, 1 normal, 2 high, 3 critical)
//	[1] n, the protocol's length (1..128)
//	[n] protocol (printable ASCII, no spaces)
//
// travels with the stream's first Write. The accepting side reads it
// (within Config.HeaderTimeout), asks the route function for the
// protocol's Handler and runs it in its own goroutine, which owns the
// stream.
//
// A stream the acceptor will not serve is reset with a reason code, which
// peerlink carries in the length field of yamux's RST frame: 1 protocol
// not supported, 2 stream limit (Config.MaxStreams, checked before any
// goroutine is started), 3 malformed or late header, 4 Stream.Reset. The
// opener's next Read or Write then fails with a *ResetError that
// satisfies errors.Is for ErrStreamReset and for the code's own sentinel
// (ErrProtocolNotSupported, ErrStreamLimit, ErrMalformedHeader).
//
// Between yamux and the link sits a frame conn that joins each data
// frame's 12-byte header with its body into one Write (one TLS record
// where yamux alone makes two for small frames), counts the bytes each
// way, injects the coded RST frames, and follows the incoming frames so
// that a RST's code and a FIN are known before yamux acts on them.
//
// Goroutines: yamux runs three per session (receive, send, keepalive);
// mux adds one, the accept loop, plus one per inbound stream that is
// being served, plus one per OpenStream with a cancellable context while
// yamux is opening, plus one while a ping is in flight (concurrent Ping
// and PingContext calls share it). Close waits for all of mux's.
package mux
