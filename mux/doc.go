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
// not supported, 2 stream limit or memory budget (checked at the
// stream's SYN, before yamux or any goroutine sees it), 3 malformed or
// late header, 4 Stream.Reset, 5 opened after the acceptor's GoAway, 6
// the handler panicked, 7 data kept coming after the handler had
// returned. The opener's next Read or Write then fails with a *ResetError
// that satisfies errors.Is for ErrStreamReset and for the code's own
// sentinel (ErrProtocolNotSupported, ErrStreamLimit, ErrMalformedHeader,
// ErrGoAway, ErrHandlerFailed, ErrReceiverGone).
//
// Each session has a write scheduler (see Config). A Write is cut into
// chunks of at most Config.ChunkSize bytes (16 KiB, one yamux data frame
// each) that take turns on the link: at most Config.MaxInFlightChunks
// (2) are committed at once, so a critical chunk waits behind at most
// that many; turns go to the priorities by stride scheduling with
// Config.PriorityWeights (critical 8, high 4, normal 2, low 1: under
// saturation 8/15, 4/15, 2/15, 1/15 of the link, none starving); a stream
// whose remote is not reading waits for window without holding a turn.
// Writes are first admitted to a bounded queue (Config.MaxQueuedBytes,
// MaxQueuedWrites, FailFast and ErrBackpressure), with a quarter kept for
// high and critical writes. It bounds what piles up behind the link: a
// Write counts there as one write and, in bytes, only as much as its
// stream's send window lets it send now (its unsent bytes, cut to the
// window and to MaxQueuedBytes; the charge shrinks as chunks go and grows
// as the remote returns window), so a stream whose remote has stopped
// reading takes no room from the others. Concurrent Writes to one stream
// enter the queue one at a time. Write's deadline and WriteContext's
// context bound every wait, that for the link included; past it the
// Write fails alone and the session goes on. Every write to the link has
// a write deadline of now + Config.WriteTimeout (ConnectionWriteTimeout,
// 10s, by default); one that times out may have sent part of a frame
// (and crypto/tls fails every write after a failed one), so the session
// then ends with an error wrapping ErrWriteTimeout, and every Write
// waiting on it returns at once. mux writes these data frames itself,
// from the writer's goroutine (from a goroutine of their own for a Write
// whose deadline is sooner than WriteTimeout, so that it can return
// while they are still on their way); yamux does the rest.
//
// Stream slots: Config.MaxStreams per session, of which ReservedStreams
// (10% by default) only high and critical streams may take, lowered to
// fit Config.MemoryBudget; and optionally node-wide budgets
// (Config.Node, NodeLimits): inbound and outbound slots apart, a peer's
// share of the inbound ones, and memory. An inbound stream takes its
// session slot at its SYN and its node slot only once its header has
// arrived. OpenStream waits for a slot in priority order (or fails at
// once, FailFastStreams).
//
// Memory is counted as yamux really spends it: a stream's receive buffer
// grows by doubling, so a stream whose reader falls behind can hold
// twice its window (StreamMemory). Per session, MaxStreams ×
// StreamMemory stays within MemoryBudget; node-wide, each stream is
// charged StreamMemory while it holds its slot.
//
// The guard. Every frame the remote sends passes a filter before yamux
// sees it, which follows each stream ID from its SYN to its end. A stream
// refused at its SYN never reaches yamux. Once a stream is reset (either
// way) or its handler has returned, what the remote still sends for it
// is dropped, not buffered, and yamux is made to forget the stream at
// once; the remote may send up to one window more (what was in flight),
// and a remote that sends more than a window of such data, data for
// streams never opened, a stream ID twice, or pings faster than it reads
// the answers, ends the session with ErrProtocolViolation. The remote's
// pings are answered by mux (yamux would start a goroutine for each).
//
// Between yamux and the link sits a frame conn that serialises the
// writers, joins each frame's 12-byte header with its body into one
// Write (one TLS record where yamux alone makes two for small frames),
// counts the bytes each way, injects the coded RST frames, and follows
// the incoming frames so that a RST's code, a FIN and window updates are
// known before yamux acts on them.
//
// Goroutines: yamux runs three per session (receive, send, keepalive);
// mux adds one, the accept loop, plus one per inbound stream that is
// being served, plus one per OpenStream with a cancellable context while
// yamux is opening, plus one while a ping is in flight (concurrent Ping
// and PingContext calls share it), plus one while resets or ping answers
// are waiting to be written, plus one that closes yamux once the session
// is closing or has ended, plus one while a Write whose deadline is
// sooner than WriteTimeout writes its frames (holding the link, so one at
// a time). The write scheduler adds none: writers wait in their own
// goroutines and write their chunks themselves. StartClose begins
// closing without waiting; Wait waits for
// all of mux's goroutines (and so for yamux's); Close does both.
//
// Draining: GoAway sends yamux's GoAway frame. From then on neither side
// opens streams (OpenStream fails with ErrGoAway), a stream the remote
// opened before it saw the frame is refused with code 5 (its opener gets
// ErrGoAway and may retry elsewhere), and the streams already open finish
// normally.
//
// A handler's panic is recovered: its stream is reset with code 6
// (ErrHandlerFailed at the opener), and the session goes on.
package mux
