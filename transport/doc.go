// Package transport establishes peerlink's links: authenticated,
// admitted connections between two nodes that each know the other's
// peer ID. A node embeds one Transport; the connection manager dials
// through it and serves a Listener, and runs one mux session over each
// Conn it gets.
//
// # Link establishment
//
// Dialing: Gater.InterceptDial (before any network traffic), the socket,
// the security handshake, Gater.InterceptSecured(Outbound), then the
// listener's admission verdict. Listening: the socket,
// Gater.InterceptAccept, the per-address link limit, a place in the
// pending table (below), then in the socket's own goroutine the wait for
// its first byte, the handshake, Gater.InterceptSecured(Inbound), the
// verdict written, and the link handed to Listener.Accept. The
// handshake and the verdict together run under Config.HandshakeTimeout
// on both sides (on the listening side counted from the accept). This
// sequence is one code path for every transport; only the security step
// differs.
//
// The admission verdict, listener to dialer:
//
//	[1] version = 1
//	[1] code    (0 accepted; else a RefusalCode)
//	[1] n       reason length (0..255)
//	[n] reason  UTF-8 text: the refusing gater's error
//
// A Gater chooses the code by returning an error made by Refuse; the
// dialer gets a *RemoteRefusedError (errors.Is(err, ErrRemoteRefused)).
//
// # Attack resistance of the listener
//
// A listener holds each inbound socket in a pending table from its
// accept until its link is handed to Accept, one goroutine each. Sockets
// that connect and then send nothing, or little, must not fill it and
// keep honest dialers out:
//
//   - A socket that sends no byte within Config.FirstByteTimeout (2 s) is
//     closed; an honest dialer speaks first, at once.
//   - The table has caps: Config.MaxPendingHandshakes per listener (64),
//     MaxPendingPerIP per source IP (8) and MaxPendingPerSubnet per /24
//     or IPv6 /64 (16). A new socket that would exceed one takes the
//     place of another in that cap's scope (the narrowest full one): the
//     oldest that has sent nothing yet, else the oldest whose handshake
//     has run longer than FirstByteTimeout; that one is closed. So a full
//     table never refuses a socket while one that has sent nothing sits
//     in its scope, and sockets reopened as fast as they are dropped only
//     evict each other. Links admitted and waiting for Accept are never
//     evicted.
//   - Only if the scope holds neither is the new socket refused as busy.
//     The dialer is told: see the refusal marker below.
//   - Config.MaxInboundPerIP (8) bounds the established inbound links per
//     remote IPv4 address or IPv6 /64, from admission until the Conn is
//     closed; a socket from an address at its limit is refused at once,
//     before any TLS work. Pending handshakes do not count here.
//   - Config.LimitExempt lists prefixes exempt from the per-address caps
//     (not from MaxPendingHandshakes). Loopback is not exempt by
//     default. Memory addresses have no IP: only MaxPendingHandshakes
//     applies to them.
//
// The accept loop waits on none of this: evicting closes the victim's
// socket (its goroutine then ends), and at most 32 refusals at once
// write the marker, each in a short-lived goroutine (at most a second;
// off TCP it takes a second goroutine to drain the socket); beyond that
// a refused socket is just closed. Stats counts each outcome (InboundEvictedSilent,
// InboundEvictedSlow, InboundOverLimit, InboundAddrLimit,
// InboundFirstByteTimeout).
//
// The refusal marker, listener to dialer, in plaintext in place of the
// listener's first handshake bytes, just before it closes the socket:
//
//	[4] "PLNK"
//	[1] code  1: listener busy (no room for another pending handshake)
//	          2: too many links from the dialer's address
//
// A TLS dialer reads it as a malformed record header, a memory dialer as
// a malformed hello; both report a *ListenerRefusedError naming the
// listener, wrapping ErrListenerBusy (code 1, and codes this version
// does not know) or ErrAddrConnLimit (code 2). Over TCP the listener
// then shuts its side and reads what the dialer sent until the dialer
// closes (at most a second), so that no reset overtakes the marker.
// Two handshakes from one address that both pass the accept-time check
// cannot both exceed MaxInboundPerIP: the second is refused by its
// verdict, code RefusalAddrLimit, which also wraps ErrAddrConnLimit.
//
// # TCP: TLS 1.3 with identity certificates
//
// NewTCP makes a certificate self-signed by the node's ed25519 identity
// key, whose key is the identity key, so a peer's ID is its
// certificate's public key. Both sides present one (mutual TLS, 1.3
// only, ALPN "peerlink/1"); each checks the other's is exactly one
// ed25519 certificate, self-signed, within its validity, and of its own
// network, and the dialer checks the key is the ID it dialed. There is
// no PKI: whoever holds a key is that peer.
//
// The network is carried in the certificate as a URI SAN
// "peerlink:<network, path-escaped>". The dialer also announces it as
// the TLS server name (hex, "….peerlink.invalid"): in TLS 1.3 the dialer
// checks the listener's certificate first, so when it refuses a listener
// of another network the listener only receives a "bad certificate"
// alert; the announced name lets it report ErrNetworkMismatch instead of
// ErrCertificateRejected. The certificate is what is checked; the server
// name is never trusted for admission.
//
// # Memory: for tests and simulations only
//
// MemoryNetwork and Memory carry links over net.Pipe pairs within a
// process. Their hello only claims IDs: it authenticates nothing.
//
// # Round-trip time
//
// Each Conn reports HandshakeRTT, the round trip measured while the link
// was established (the TCP connect, or a handshake message and its
// answer), for sizing windows to the bandwidth-delay product.
//
// # Testing and simulation hooks
//
// Config.RawConnWrapper wraps every raw connection, dialed and accepted,
// before the security handshake, so that link shaping (see
// faultnet.Link) and fault injection sit under TLS as a real network
// does. The listener reads an inbound socket's first byte, and writes
// its refusal marker, through the wrapper too.
//
// # Errors
//
// Errors wrap the package's sentinels (ErrPeerIDMismatch,
// ErrNetworkMismatch, ErrGated, ErrRemoteRefused, ErrHandshakeTimeout,
// ErrListenerBusy, ErrAddrConnLimit, ...) and, where they come from a
// Gater or the context, those errors too. ErrListenerBusy says nothing
// against the listener or the dialer: a dial refused so may be retried
// later. Nothing that is returned is also logged; per-link events are
// logged at debug level.
package transport
