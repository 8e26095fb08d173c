package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// ALPN is the TLS application protocol both sides must negotiate.
const ALPN = "peerlink/1"

// CertURIScheme is the scheme of the URI SAN that carries a node's
// network in its certificate: "peerlink:" followed by the network name
// path-escaped (url.PathEscape).
const CertURIScheme = "peerlink"

// certBackdate is how far in the past a certificate's NotBefore lies, so
// that peers whose clocks run behind ours accept it.
const certBackdate = time.Hour

// certNotAfter is RFC 5280's "no well-defined expiration date".
var certNotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// sniSuffix ends the server name a dialer sends. See networkSNI.
const sniSuffix = ".peerlink.invalid"

// newCertificate makes the node's certificate: self-signed by the
// identity key, whose public half is the certificate's key, carrying the
// network as a URI SAN.
func newCertificate(id *peer.Identity, network string, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "peerlink"},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              certNotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{networkURI(network)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.PublicKey(), id.PrivateKey())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: parse own certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.PrivateKey(), Leaf: leaf}, nil
}

func networkURI(network string) *url.URL {
	return &url.URL{Scheme: CertURIScheme, Opaque: url.PathEscape(network)}
}

// certNetwork returns the network a certificate carries.
func certNetwork(c *x509.Certificate) (string, error) {
	var found []string
	for _, u := range c.URIs {
		if u.Scheme != CertURIScheme {
			continue
		}
		n, err := url.PathUnescape(u.Opaque)
		if err != nil || u.Opaque == "" || checkNetwork(n) != nil {
			return "", fmt.Errorf("%w: malformed network URI %q", ErrInvalidCertificate, u.String())
		}
		found = append(found, n)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no %s: URI naming its network", ErrInvalidCertificate, CertURIScheme)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %d network URIs, want 1", ErrInvalidCertificate, len(found))
}

// verifyCertificate checks the chain a peer presented and returns the ID
// it proves: exactly one certificate, ed25519, self-signed by its own
// key, valid at now, of our network. (TLS itself has checked that the
// peer holds the key: CertificateVerify.)
func verifyCertificate(certs []*x509.Certificate, network string, now time.Time) (peer.ID, error) {
	if len(certs) != 1 {
		return peer.ID{}, fmt.Errorf("%w: %d certificates, want exactly 1", ErrInvalidCertificate, len(certs))
	}
	c := certs[0]
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return peer.ID{}, fmt.Errorf("%w: %v key, want Ed25519", ErrInvalidCertificate, c.PublicKeyAlgorithm)
	}
	if c.SignatureAlgorithm != x509.PureEd25519 {
		return peer.ID{}, fmt.Errorf("%w: signed with %v, want Ed25519", ErrInvalidCertificate, c.SignatureAlgorithm)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return peer.ID{}, fmt.Errorf("%w: not self-signed by its key: %w", ErrInvalidCertificate, err)
	}
	if now.Before(c.NotBefore) {
		return peer.ID{}, fmt.Errorf("%w: not valid before %s (now %s; clock skew?)", ErrInvalidCertificate,
			c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return peer.ID{}, fmt.Errorf("%w: expired at %s", ErrInvalidCertificate, c.NotAfter.UTC().Format(time.RFC3339))
	}
	theirs, err := certNetwork(c)
	if err != nil {
		return peer.ID{}, err
	}
	if theirs != network {
		return peer.ID{}, fmt.Errorf("%w: we are on %q, remote is on %q", ErrNetworkMismatch, network, theirs)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return peer.ID{}, fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	return id, nil
}

// networkSNI encodes a network as the server name a dialer sends: its
// hex form in labels of at most 63 characters, then ".peerlink.invalid".
// It lets a listener whose certificate the dialer refused tell a network
// mismatch from other refusals; the certificate stays authoritative.
func networkSNI(network string) string {
	h := hex.EncodeToString([]byte(network))
	var b strings.Builder
	for len(h) > 63 {
		b.WriteString(h[:63])
		b.WriteByte('.')
		h = h[63:]
	}
	b.WriteString(h)
	b.WriteString(sniSuffix)
	return b.String()
}

// networkFromSNI decodes networkSNI's output.
func networkFromSNI(sni string) (string, bool) {
	h, ok := strings.CutSuffix(sni, sniSuffix)
	if !ok {
		return "", false
	}
	b, err := hex.DecodeString(strings.ReplaceAll(h, ".", ""))
	if err != nil || checkNetwork(string(b)) != nil {
		return "", false
	}
	return string(b), true
}

// tlsSecurer is the TCP transport's security step: TLS 1.3, mutual, with
// the self-signed identity certificates.
type tlsSecurer struct {
	local   peer.ID
	network string
	certs   []tls.Certificate
	sni     string
	server  *tls.Config
	now     func() time.Time
}

var alpnProtos = []string{ALPN}

func newTLSSecurer(cfg Config, now func() time.Time) (*tlsSecurer, error) {
	cert, err := newCertificate(cfg.Identity, cfg.Network, now())
	if err != nil {
		return nil, err
	}
	s := &tlsSecurer{
		local:   cfg.Identity.ID(),
		network: cfg.Network,
		certs:   []tls.Certificate{cert},
		sni:     networkSNI(cfg.Network),
		now:     now,
	}
	s.server = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Certificates:           s.certs,
		ClientAuth:             tls.RequireAnyClientCert,
		NextProtos:             alpnProtos,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs)
			return err
		},
	}
	return s, nil
}

func (s *tlsSecurer) name() string { return "tls handshake" }

// verify checks the negotiated protocol and the peer's certificate.
func (s *tlsSecurer) verify(cs tls.ConnectionState) (peer.ID, error) {
	if cs.NegotiatedProtocol != ALPN {
		return peer.ID{}, fmt.Errorf("%w: negotiated application protocol %q, want %q", ErrProtocol, cs.NegotiatedProtocol, ALPN)
	}
	return verifyCertificate(cs.PeerCertificates, s.network, s.now())
}

func (s *tlsSecurer) secureOutbound(raw net.Conn, expected peer.ID) (Conn, error) {
	var remote peer.ID
	conf := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Certificates:           s.certs,
		InsecureSkipVerify:     true, // verified below: the chain is a self-signed key, not a PKI path
		ServerName:             s.sni,
		NextProtos:             alpnProtos,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.verify(cs)
			if err != nil {
				return err
			}
			if id != expected {
				return fmt.Errorf("%w: expected %s, got %s", ErrPeerIDMismatch, expected, id)
			}
			remote = id
			return nil
		},
	}
	lead, err := speakFirst(raw)
	if err != nil {
		return nil, err
	}
	batch := &recordBatcher{Conn: lead, probing: true}
	tc := tls.Client(batch, conf)
	err = tc.Handshake()
	rtt := batch.stopProbe() // ClientHello to the listener's flight
	batch.Conn = raw         // the handshake's writes are done (see leadConn)
	if err != nil {
		// A listener that refused us before the handshake wrote the
		// refusal marker, which crypto/tls takes for a record header.
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			if code, ok := parseMarker(rh.RecordHeader[:]); ok {
				return nil, listenerRefused(raw.RemoteAddr(), code)
			}
		}
		return nil, s.handshakeError(tc, err, Outbound)
	}
	return newTLSConn(tc, batch, linkInfo{local: s.local, remote: remote, dir: Outbound, rtt: rtt}), nil
}

func (s *tlsSecurer) secureInbound(raw net.Conn) (Conn, error) {
	batch := &recordBatcher{Conn: raw, probing: true}
	tc := tls.Server(batch, s.server)
	err := tc.Handshake()
	rtt := batch.stopProbe() // our flight to the dialer's answer
	if err != nil {
		return nil, s.handshakeError(tc, err, Inbound)
	}
	// The ClientHello has been read, the listener's first byte replayed
	// with it: from now on the link reads its socket directly. (batch
	// is this goroutine's alone until the Conn is returned.)
	batch.Conn = unwrapReplay(batch.Conn)
	// VerifyConnection accepted the certificate; take the key it proved.
	remote, err := verifyCertificate(tc.ConnectionState().PeerCertificates, s.network, s.now())
	if err != nil {
		closeTLS(tc, batch)
		return nil, err
	}
	return newTLSConn(tc, batch, linkInfo{local: s.local, remote: remote, dir: Inbound, rtt: rtt}), nil
}

// handshakeError explains a failed handshake. Our own verification
// errors pass as they are. A certificate alert from a dialer is, if the
// dialer announced another network, a network mismatch.
func (s *tlsSecurer) handshakeError(tc *tls.Conn, err error, dir Direction) error {
	if isOurs(err) || isTimeout(err) {
		return err
	}
	mapped := mapRemoteAlert(err)
	if dir == Inbound && errors.Is(mapped, ErrCertificateRejected) {
		if theirs, ok := networkFromSNI(tc.ConnectionState().ServerName); ok && theirs != s.network {
			return fmt.Errorf("%w: we are on %q, the dialer announced %q and refused our certificate", ErrNetworkMismatch, s.network, theirs)
		}
	}
	if mapped != err {
		return mapped
	}
	// Local refusals by crypto/tls itself, told apart by their text.
	switch text := err.Error(); {
	case strings.Contains(text, "unsupported versions"):
		return fmt.Errorf("%w: remote does not speak TLS 1.3: %w", ErrProtocol, err)
	case strings.Contains(text, "didn't provide a certificate"):
		return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	return err
}

// mapRemoteAlert recognises the TLS alerts a remote sends when it refuses
// the handshake. crypto/tls reports them as *net.OpError{Op: "remote
// error"} around an unexported alert type, so they are told apart by
// their text. Other errors are returned unchanged.
func mapRemoteAlert(err error) error {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return err
	}
	switch text := oe.Err.Error(); text {
	case "tls: bad certificate", "tls: unsupported certificate", "tls: unknown certificate",
		"tls: certificate expired", "tls: certificate revoked", "tls: certificate required":
		return fmt.Errorf("%w: %w", ErrCertificateRejected, err)
	case "tls: protocol version not supported":
		return fmt.Errorf("%w: remote does not speak TLS 1.3: %w", ErrProtocol, err)
	case "tls: no application protocol":
		return fmt.Errorf("%w: remote does not speak %s: %w", ErrProtocol, ALPN, err)
	}
	return err
}
