package peer

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestGenerateIdentityFrom(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	a, err := GenerateIdentityFrom(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateIdentityFrom(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() {
		t.Errorf("same randomness gave IDs %v and %v; simulations rely on them being equal", a.ID(), b.ID())
	}
	if !bytes.Equal(a.PublicKey(), a.ID().PublicKey()) {
		t.Errorf("PublicKey() = %x, ID().PublicKey() = %x", a.PublicKey(), a.ID().PublicKey())
	}
	msg := []byte("hello")
	if !ed25519.Verify(a.ID().PublicKey(), msg, ed25519.Sign(a.PrivateKey(), msg)) {
		t.Error("a signature by PrivateKey() does not verify under ID()")
	}
	if _, err := GenerateIdentityFrom(bytes.NewReader(seed[:10])); err == nil {
		t.Error("GenerateIdentityFrom of a short reader succeeded")
	}
}

func TestIdentityFromKey(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	want := id.ID()
	clear(priv) // the identity must hold its own copy
	if id.ID() != want || id.PrivateKey().Equal(priv) {
		t.Error("the identity changed when the caller wiped the key it passed in")
	}

	mismatched := bytes.Clone(id.PrivateKey())
	mismatched[ed25519.PrivateKeySize-1] ^= 1 // public half no longer matches the seed
	if _, err := IdentityFromKey(mismatched); err == nil {
		t.Error("IdentityFromKey accepted a key whose public half does not match its seed")
	}
	if _, err := IdentityFromKey(mismatched[:ed25519.SeedSize]); err == nil {
		t.Error("IdentityFromKey accepted a 32-byte key")
	}
}

func TestIdentitySaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	// A stale, world-readable file in the way: Save replaces it, and the
	// new file is 0600 whatever the old one was.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Save(path); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("saved key file has mode %#o, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("saved key file does not start with a PKCS#8 PEM header:\n%s", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries after Save, want only the key file", len(entries))
	}

	got, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != id.ID() || !got.PrivateKey().Equal(id.PrivateKey()) {
		t.Errorf("loaded identity %v, want %v", got.ID(), id.ID())
	}
}

func TestLoadIdentityRefuses(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	good, err := id.marshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	secDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		data    []byte
		mode    fs.FileMode
		wantIs  error  // nil: no sentinel expected
		wantMsg string // substring of the error
		unix    bool   // the case depends on Unix permission bits
	}{
		{name: "world-readable", data: good, mode: 0o644, wantIs: ErrInsecureKeyFile, wantMsg: "has mode 0644; it must be 0600 or stricter", unix: true},
		{name: "group-readable", data: good, mode: 0o640, wantIs: ErrInsecureKeyFile, wantMsg: "mode 0640", unix: true},
		{name: "world-writable only", data: good, mode: 0o602, wantIs: ErrInsecureKeyFile, wantMsg: "mode 0602", unix: true},
		{name: "ecdsa key", data: pkcs8(ecKey), mode: 0o600, wantIs: ErrNotEd25519, wantMsg: "holds a *ecdsa.PrivateKey"},
		{name: "x25519 key", data: pkcs8(xKey), mode: 0o600, wantIs: ErrNotEd25519, wantMsg: "holds a *ecdh.PrivateKey"},
		{name: "garbage", data: []byte("not a key\x00\xff"), mode: 0o600, wantMsg: "not a PEM file"},
		{name: "empty", data: nil, mode: 0o600, wantMsg: "not a PEM file"},
		{name: "SEC 1 EC key", data: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: secDER}), mode: 0o600, wantMsg: `PEM block is "EC PRIVATE KEY", want "PRIVATE KEY"`},
		{name: "bad PKCS#8", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), mode: 0o600, wantMsg: "not a PKCS#8 private key"},
		{name: "too large", data: bytes.Repeat([]byte("a"), maxKeyFileSize+1), mode: 0o600, wantMsg: "too large to be a key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.unix && runtime.GOOS == "windows" {
				t.Skip("Windows has no group/other permission bits")
			}
			path := filepath.Join(t.TempDir(), "node.key")
			if err := os.WriteFile(path, tt.data, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // WriteFile's mode is subject to the umask
				t.Fatal(err)
			}
			got, err := LoadIdentity(path)
			if err == nil {
				t.Fatalf("LoadIdentity succeeded with %v, want an error", got.ID())
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			for _, sentinel := range []error{ErrInsecureKeyFile, ErrNotEd25519} {
				if sentinel != tt.wantIs && errors.Is(err, sentinel) {
					t.Errorf("error %v is also %v", err, sentinel)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoadIdentityNotAFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadIdentity(filepath.Join(dir, "missing.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v, want fs.ErrNotExist", err)
	}
	if _, err := LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: error %v, want one saying it is not a regular file", err)
	}
}

func TestLoadOrCreateIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	first, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("LoadOrCreateIdentity did not create the file: %v", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("created key file has mode %#o, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID() != first.ID() {
		t.Errorf("second call gave %v, want the saved %v", again.ID(), first.ID())
	}

	// A file that exists but is refused is an error, not a reason to make
	// a new identity over it.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if _, err := LoadOrCreateIdentity(path); !errors.Is(err, ErrInsecureKeyFile) {
			t.Errorf("0644 file: error %v, want ErrInsecureKeyFile", err)
		}
	}
	if _, err := LoadOrCreateIdentity(filepath.Join(t.TempDir(), "no", "such", "dir", "node.key")); err == nil {
		t.Error("LoadOrCreateIdentity in a missing directory succeeded")
	}
}

func TestLoadOrCreateIdentityRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	const n = 16
	ids := make([]ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var id *Identity
			id, errs[i] = LoadOrCreateIdentity(path)
			if id != nil {
				ids[i] = id.ID()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("caller %d got %v, caller 0 got %v: all must get the one saved identity", i, ids[i], ids[0])
		}
	}
	saved, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if saved.ID() != ids[0] {
		t.Errorf("file holds %v, callers got %v", saved.ID(), ids[0])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file", len(entries))
	}
}
