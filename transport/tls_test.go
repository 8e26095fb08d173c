package transport

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// rawTLSDial runs a handshake against addr with conf, then reads the
// verdict, and returns the first error.
func rawTLSDial(t *testing.T, addr string, conf *tls.Config) error {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(waitLimit))
	c := tls.Client(raw, conf)
	if err := c.Handshake(); err != nil {
		return err
	}
	_, _, err = readVerdict(c)
	return err
}

func identityCert(t *testing.T, network string) (*peer.Identity, tls.Certificate) {
	t.Helper()
	id, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := newCertificate(id, network, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id, cert
}

func TestTLS12ClientRefused(t *testing.T) {
	e := tcpEnv{}
	a := newNode(t, e, nil)
	l := a.listen(t, e)
	_, cert := identityCert(t, testNetwork)
	err := rawTLSDial(t, l.Addr().String(), &tls.Config{
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true,
		NextProtos:         []string{ALPN},
	})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.2 client: %v, want a protocol version alert", err)
	}
	wantIs(t, mapRemoteAlert(err), ErrProtocol)
	ev := a.waitEvent(t, "failed")
	t.Logf("client: %v", err)
	t.Logf("listener: %v", ev.err)
	if !strings.Contains(ev.err.Error(), "unsupported versions") {
		t.Errorf("listener error: %v", ev.err)
	}
}

// Our dialer refuses a server that stops at TLS 1.2.
func TestTLS12ServerRefused(t *testing.T) {
	e := tcpEnv{}
	b := newNode(t, e, nil)
	_, cert := identityCert(t, testNetwork)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MaxVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitLimit))
		_ = c.(*tls.Conn).Handshake()
	})
	_, err = b.tr.Dial(dialCtx(t), ln.Addr().String(), b.ID())
	if err == nil {
		t.Fatal("dial succeeded")
	}
	t.Logf("dialer: %v", err)
}

func TestTLSClientWithoutCertificate(t *testing.T) {
	e := tcpEnv{}
	a := newNode(t, e, nil)
	l := a.listen(t, e)
	err := rawTLSDial(t, l.Addr().String(), &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		NextProtos:         []string{ALPN},
	})
	wantIs(t, mapRemoteAlert(err), ErrCertificateRejected)
	ev := a.waitEvent(t, "failed")
	t.Logf("client: %v", err)
	t.Logf("listener: %v", ev.err)
}

func TestTLSClientWithoutALPN(t *testing.T) {
	e := tcpEnv{}
	a := newNode(t, e, nil)
	l := a.listen(t, e)
	_, cert := identityCert(t, testNetwork)
	err := rawTLSDial(t, l.Addr().String(), &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true,
	})
	if err == nil {
		t.Fatal("client without ALPN admitted")
	}
	ev := a.waitEvent(t, "failed")
	wantIs(t, ev.err, ErrProtocol)
	t.Logf("listener: %v", ev.err)
}

func TestTLSClientECDSACert(t *testing.T) {
	e := tcpEnv{}
	a := newNode(t, e, nil)
	l := a.listen(t, e)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := makeCert(t, nil, &key.PublicKey, key)
	err = rawTLSDial(t, l.Addr().String(), &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		InsecureSkipVerify: true,
		NextProtos:         []string{ALPN},
	})
	wantIs(t, mapRemoteAlert(err), ErrCertificateRejected)
	ev := a.waitEvent(t, "failed")
	wantIs(t, ev.err, ErrInvalidCertificate)
	t.Logf("listener: %v", ev.err)
}

// When the listener refuses the dialer's certificate, the dialer's TLS
// handshake has already succeeded (TLS 1.3: the client finishes first);
// it learns of the refusal as an alert where it expects the verdict.
func TestListenerRejectsDialerCertificate(t *testing.T) {
	e := tcpEnv{}
	a := newNode(t, e, nil)
	b := newNode(t, e, nil)
	// b's certificate claims another network than b checks for.
	cert, err := newCertificate(b.id, "elsewhere", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.tr.(*TCP).sec.certs[0] = cert
	l := a.listen(t, e)
	_, err = b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
	wantIs(t, err, ErrCertificateRejected)
	ev := a.waitEvent(t, "failed")
	wantIs(t, ev.err, ErrNetworkMismatch)
	t.Logf("dialer: %v", err)
	t.Logf("listener: %v", ev.err)
}

// makeCert creates a certificate for pub signed by signer; mutate edits
// the template (defaults: valid now, network testNetwork).
func makeCert(t *testing.T, mutate func(*x509.Certificate), pub any, signer any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "peerlink"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		URIs:         []*url.URL{networkURI(testNetwork)},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func parse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyCertificate(t *testing.T) {
	id, cert := identityCert(t, testNetwork)
	pub, priv := id.PublicKey(), id.PrivateKey()
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()

	got, err := verifyCertificate([]*x509.Certificate{cert.Leaf}, testNetwork, now)
	if err != nil || got != id.ID() {
		t.Fatalf("own certificate: %s %v", got, err)
	}
	if cert.Leaf.NotBefore.After(now) || cert.Leaf.NotAfter.Before(now.AddDate(100, 0, 0)) {
		t.Errorf("validity %v..%v", cert.Leaf.NotBefore, cert.Leaf.NotAfter)
	}

	cases := []struct {
		name  string
		certs []*x509.Certificate
		want  error
		text  string
	}{
		{"none", nil, ErrInvalidCertificate, "0 certificates"},
		{"two", []*x509.Certificate{cert.Leaf, cert.Leaf}, ErrInvalidCertificate, "2 certificates"},
		{"ecdsa", []*x509.Certificate{parse(t, makeCert(t, nil, &ecKey.PublicKey, ecKey))}, ErrInvalidCertificate, "want Ed25519"},
		{"signed by another key", []*x509.Certificate{parse(t, makeCert(t, nil, pub, otherPriv))}, ErrInvalidCertificate, "not self-signed"},
		{"expired", []*x509.Certificate{parse(t, makeCert(t, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
		}, pub, priv))}, ErrInvalidCertificate, "expired"},
		{"not yet valid", []*x509.Certificate{parse(t, makeCert(t, func(c *x509.Certificate) {
			c.NotBefore = now.Add(time.Hour)
			c.NotAfter = now.Add(2 * time.Hour)
		}, pub, priv))}, ErrInvalidCertificate, "not valid before"},
		{"no network", []*x509.Certificate{parse(t, makeCert(t, func(c *x509.Certificate) { c.URIs = nil }, pub, priv))}, ErrInvalidCertificate, "no peerlink: URI"},
		{"two networks", []*x509.Certificate{parse(t, makeCert(t, func(c *x509.Certificate) {
			c.URIs = append(c.URIs, networkURI("other"))
		}, pub, priv))}, ErrInvalidCertificate, "2 network URIs"},
		{"bad network", []*x509.Certificate{parse(t, makeCert(t, func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: CertURIScheme, Opaque: "a%20b"}}
		}, pub, priv))}, ErrInvalidCertificate, "malformed network URI"},
		{"other network", []*x509.Certificate{parse(t, makeCert(t, func(c *x509.Certificate) {
			c.URIs = []*url.URL{networkURI("mainnet")}
		}, pub, priv))}, ErrNetworkMismatch, `we are on "peerlink-test", remote is on "mainnet"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifyCertificate(tc.certs, testNetwork, now)
			wantIs(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q lacks %q", err, tc.text)
			}
		})
	}
}

func TestNetworkEncodings(t *testing.T) {
	networks := []string{"a", "cosmoshub-4", "eth:1/main?x=y#frag%41", "[::1]", "1.2.3.4", "trailing.",
		strings.Repeat("~", MaxNetworkLen), strings.Repeat("%", MaxNetworkLen)}
	for _, n := range networks {
		id, cert := identityCert(t, n)
		got, err := certNetwork(cert.Leaf)
		if err != nil || got != n {
			t.Errorf("certificate network %q: got %q %v", n, got, err)
		}
		if _, err := verifyCertificate([]*x509.Certificate{cert.Leaf}, n, time.Now()); err != nil {
			t.Errorf("verify %q: %v", n, err)
		}
		_ = id
		sni := networkSNI(n)
		if len(sni) > 255 {
			t.Errorf("SNI for %q is %d bytes", n, len(sni))
		}
		for _, label := range strings.Split(sni, ".") {
			if len(label) == 0 || len(label) > 63 {
				t.Errorf("SNI %q has label %q", sni, label)
			}
		}
		if got, ok := networkFromSNI(sni); !ok || got != n {
			t.Errorf("SNI round trip %q: %q %v", n, got, ok)
		}
	}
	for _, bad := range []string{"", "example.com", "zz.peerlink.invalid", ".peerlink.invalid", "2061.peerlink.invalid"} {
		if n, ok := networkFromSNI(bad); ok {
			t.Errorf("networkFromSNI(%q) = %q", bad, n)
		}
	}
}

// Dialing end to end with awkward network names.
func TestAwkwardNetworkNames(t *testing.T) {
	for _, n := range []string{"eth:1/main?x=y#frag%41", strings.Repeat("%", MaxNetworkLen)} {
		e := tcpEnv{}
		a := newNode(t, e, func(c *Config) { c.Network = n })
		b := newNode(t, e, func(c *Config) { c.Network = n })
		l := a.listen(t, e)
		accepted := acceptAsync(t, l)
		c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		if err != nil {
			t.Fatalf("network %q: %v", n, err)
		}
		c.Close()
		<-accepted
	}
}
