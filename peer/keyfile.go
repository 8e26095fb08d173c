package peer

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// pemType is the PEM block type of a PKCS#8 private key, the form
// `openssl genpkey -algorithm ed25519` writes, so key files can be made and
// inspected with standard tools.
const pemType = "PRIVATE KEY"

// maxKeyFileSize bounds what LoadIdentity reads. An ed25519 key file is
// about 120 bytes; the bound only stops a wrong path (a log, a database)
// from being read into memory whole.
const maxKeyFileSize = 64 << 10

// ErrInsecureKeyFile is returned (wrapped, with the file's mode) by
// LoadIdentity when the key file's permissions grant anything to group or
// others. Whoever can read the key can impersonate the node.
var ErrInsecureKeyFile = errors.New("peer: insecure key file")

// ErrNotEd25519 is returned (wrapped, with the key type found) by
// LoadIdentity when the key file holds a valid PKCS#8 key of another
// algorithm. Peer IDs are ed25519 public keys, so no other key can serve.
var ErrNotEd25519 = errors.New("peer: key is not ed25519")

// Save writes the identity's private key to path as a PEM "PRIVATE KEY"
// block (PKCS#8), replacing any file already there. The file is created
// with mode 0600 and written under a temporary name in the same directory,
// then renamed into place, so a crash never leaves a truncated key behind
// and the key is never readable by others, not even for a moment.
func (i *Identity) Save(path string) error {
	data, err := i.marshalPEM()
	if err != nil {
		return err
	}
	if err := writeKeyFile(path, data, os.Rename); err != nil {
		return fmt.Errorf("peer: save identity: %w", err)
	}
	return nil
}

// LoadIdentity reads an identity written by Save (or any PKCS#8 PEM
// ed25519 key, such as one from `openssl genpkey -algorithm ed25519`).
//
// It refuses a file whose permission bits grant anything to group or
// others (ErrInsecureKeyFile), a file that is not PEM, a PEM block of
// another type, a block that is not PKCS#8, and a key that is not ed25519
// (ErrNotEd25519). A missing file gives an error for which
// errors.Is(err, fs.ErrNotExist) holds. The permission check is skipped
// on Windows, where mode bits do not describe access.
func LoadIdentity(path string) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("peer: load identity: %w", err)
	}
	defer f.Close()

	// Stat the open file, not the path, so that the file checked is the
	// file read even if path is replaced in between.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("peer: load identity: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("peer: load identity from %s: not a regular file (mode %v)", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %s has mode %#o; it must be 0600 or stricter (chmod 600 %s)",
			ErrInsecureKeyFile, path, perm, path)
	}

	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("peer: load identity: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("peer: load identity from %s: file is over %d bytes, too large to be a key file", path, maxKeyFileSize)
	}
	return parsePEM(path, data)
}

// LoadOrCreateIdentity loads the identity at path, or, if there is no file
// there, generates one and saves it, so that a node keeps its ID across
// restarts. The directory must exist. If two processes race to create the
// same file, both end up with the identity that was written first.
func LoadOrCreateIdentity(path string) (*Identity, error) {
	id, err := LoadIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	id, err = GenerateIdentity()
	if err != nil {
		return nil, err
	}
	data, err := id.marshalPEM()
	if err != nil {
		return nil, err
	}
	err = writeKeyFile(path, data, linkNoReplace)
	if errors.Is(err, fs.ErrExist) {
		// Someone else created it since we looked: theirs is the identity.
		return LoadIdentity(path)
	}
	if err != nil {
		return nil, fmt.Errorf("peer: create identity: %w", err)
	}
	return id, nil
}

// marshalPEM encodes the private key as a PKCS#8 PEM block.
func (i *Identity) marshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(i.priv)
	if err != nil {
		return nil, fmt.Errorf("peer: encode private key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})
	clear(der) // one fewer copy of the key left in memory for the GC to find
	return data, nil
}

// parsePEM decodes the first PEM block of data, read from path, into an
// identity.
func parsePEM(path string, data []byte) (*Identity, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("peer: load identity from %s: not a PEM file", path)
	}
	if block.Type != pemType {
		return nil, fmt.Errorf("peer: load identity from %s: PEM block is %q, want %q (PKCS#8)", path, block.Type, pemType)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	clear(block.Bytes)
	if err != nil {
		// x509's own message can be a bare asn1 error; say what was expected.
		return nil, fmt.Errorf("peer: load identity from %s: not a PKCS#8 private key: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		// The type names the algorithm: *ecdsa.PrivateKey,
		// *rsa.PrivateKey, *ecdh.PrivateKey (X25519).
		return nil, fmt.Errorf("%w: %s holds a %T", ErrNotEd25519, path, key)
	}
	// x509 derives the key from its seed, so this cannot fail on a key it
	// returned; it copies the key into the identity.
	return IdentityFromKey(priv)
}

// writeKeyFile writes data to a new 0600 file in path's directory, syncs
// it, and then lets install move it to path. Whatever happens, the
// temporary file does not outlive the call.
func writeKeyFile(path string, data []byte, install func(tmp, path string) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// os.CreateTemp opens with O_EXCL and mode 0600: the key is private
	// from the first byte, whatever the umask.
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// Sync before the rename: otherwise a crash can leave the new name
	// pointing at an empty file on some file systems.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := install(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// linkNoReplace installs tmp at path only if nothing is there: link(2)
// fails with EEXIST where rename(2) would replace. The temporary name is
// removed either way. Where hard links are unsupported it falls back to
// rename, which is still atomic but may replace a file created meanwhile.
func linkNoReplace(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		os.Remove(tmp) // path holds the key now; a leftover name is harmless
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// syncDir makes a rename in dir durable. It is best effort: some systems
// (Windows) cannot open or sync a directory, and the file itself is
// already complete on disk.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
