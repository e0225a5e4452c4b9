package evidence

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/internal/pki"
)

// Key files in the evidence directory of the data directory.
const (
	// SigningKeyFile is the server's private signing key, PKCS #8 PEM,
	// readable only by its owner.
	SigningKeyFile = "signing.key"
	// PublicKeyFile is its public key, PKIX PEM, for verifiers.
	PublicKeyFile = "signing.pub"
)

// LoadOrCreateSigningKey reads the signing key of dir, or generates an
// Ed25519 key there on first use. Ed25519 signatures are deterministic, so
// replaying a decision reproduces its envelope byte for byte.
func LoadOrCreateSigningKey(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, SigningKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		return ParsePrivateKey(data, path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	private, err := pki.KeyPEM(key)
	if err != nil {
		return nil, err
	}
	pub, err := MarshalPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	// The public key goes first: a crash between the two leaves no private
	// key, and the next start generates both again.
	if err := pki.WriteFileAtomic(filepath.Join(dir, PublicKeyFile), pub, 0o644); err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(path, private, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// ParsePrivateKey reads a PKCS #8 PEM private key: Ed25519 or ECDSA P-256.
func ParsePrivateKey(data []byte, source string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\" (PKCS #8) block", source)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("%s: ECDSA keys must use P-256, this one uses %s", source, k.Curve.Params().Name)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%s: a %T cannot sign evidence; use Ed25519 or ECDSA P-256", source, key)
}

// MarshalPublicKey encodes a public key as PKIX PEM.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PKIX PEM public key: Ed25519 or ECDSA P-256.
func ParsePublicKey(data []byte, source string) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PUBLIC KEY\" block", source)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name == "P-256" {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s: a %T cannot verify evidence; keys are Ed25519 or ECDSA P-256", source, pub)
}

// KeyID names a public key: the hex sha256 of its PKIX DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// NoteKeys are the signer and verifier of a log's checkpoints, from an
// Ed25519 key, and the verifier key as text; name is the key's name in the
// signed notes.
func NoteKeys(name string, key ed25519.PrivateKey) (note.Signer, note.Verifier, string, error) {
	vkey, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, "", err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, "", err
	}
	// A note signer key is PRIVATE+KEY+<name>+<key hash>+<algorithm 1 and
	// the seed, base64>; the key hash is the verifier key's.
	parts := strings.Split(vkey, "+")
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%s+%s", name, parts[1], base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, "", err
	}
	return signer, verifier, vkey, nil
}

// RetiredKeysDir holds, in the evidence directory, the public keys of
// signing keys rotated out, as <key ID>.pub: packets they sealed still
// verify.
const RetiredKeysDir = "retired"

// RotateSigningKey retires the signing key of dir, keeping its public key,
// and makes a new Ed25519 key. A server picks the new key up at its next
// start. It returns the retired and the new key IDs.
func RotateSigningKey(dir string) (string, string, error) {
	path := filepath.Join(dir, SigningKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("%s: there is no signing key to rotate (the server makes one at its first start)", path)
	}
	if err != nil {
		return "", "", err
	}
	old, err := ParsePrivateKey(data, path)
	if err != nil {
		return "", "", err
	}
	oldID, err := KeyID(old.Public())
	if err != nil {
		return "", "", err
	}
	pub, err := MarshalPublicKey(old.Public())
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, RetiredKeysDir), 0o700); err != nil {
		return "", "", err
	}
	// The old public key is kept before the private key goes: a crash in
	// between leaves both, and rotating again retires it once more.
	if err := pki.WriteFileAtomic(filepath.Join(dir, RetiredKeysDir, oldID+".pub"), pub, 0o644); err != nil {
		return "", "", err
	}
	if err := os.Remove(path); err != nil {
		return "", "", err
	}
	key, err := LoadOrCreateSigningKey(dir)
	if err != nil {
		return "", "", err
	}
	newID, err := KeyID(key.Public())
	return oldID, newID, err
}

// PublicKeys are the public keys of dir's signing keys, current and
// retired, by key ID.
func PublicKeys(dir string) (Keys, error) {
	keys := Keys{}
	paths, err := filepath.Glob(filepath.Join(dir, RetiredKeysDir, "*.pub"))
	if err != nil {
		return nil, err
	}
	for _, p := range append(paths, filepath.Join(dir, PublicKeyFile)) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pub, err := ParsePublicKey(data, p)
		if err != nil {
			return nil, err
		}
		if err := keys.Add(pub); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
