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
// Gater.InterceptAccept, the handshake in its own goroutine (at most
// Config.MaxPendingHandshakes at once per listener; sockets beyond that
// are closed at once), Gater.InterceptSecured(Inbound), the verdict
// written, and the link handed to Listener.Accept. The handshake and the
// verdict together run under Config.HandshakeTimeout on both sides.
// This sequence is one code path for every transport; only the security
// step differs.
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
// does.
//
// # Errors
//
// Errors wrap the package's sentinels (ErrPeerIDMismatch,
// ErrNetworkMismatch, ErrGated, ErrRemoteRefused, ErrHandshakeTimeout,
// ...) and, where they come from a Gater or the context, those errors
// too. Nothing that is returned is also logged; per-link events are
// logged at debug level.
package transport
