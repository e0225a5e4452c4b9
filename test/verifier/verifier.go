// Package verifier checks an exported Stella evidence packet the way an
// outside verifier would: from docs/evidence.md alone, with nothing but
// the Go standard library and no code shared with Stella. Tests run it on
// packets Stella exports and on the document's worked example, so that the
// document, the exporter and the server cannot drift apart unnoticed.
package verifier

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The constants of docs/evidence.md.
const (
	PayloadType  = "application/vnd.in-toto+json"
	LogEntryType = "https://stella-ops.org/attestations/log-entry/v1"
)

// Packet holds the members of an exported packet, by file name.
type Packet map[string][]byte

// ReadTar reads the members of a packet's tar archive.
func ReadTar(data []byte) (Packet, error) {
	p := Packet{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return p, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the packet: %w", err)
		}
		if p[hdr.Name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("read %s: %w", hdr.Name, err)
		}
	}
}

// Verified is what a packet proves.
type Verified struct {
	KeyID      string
	Statement  string // sha256:<hex> of the statement
	Leaf       []byte
	LeafHash   [32]byte
	Index      uint64
	Checkpoint Checkpoint
}

// Verify checks a packet against keys obtained separately: the signing
// key (PKIX PEM) and the log's note verifier key.
func Verify(p Packet, signingKeyPEM []byte, verifierKey string) (Verified, error) {
	var v Verified
	keyID, pub, err := KeyID(signingKeyPEM)
	if err != nil {
		return v, err
	}
	v.KeyID = keyID
	payload, err := VerifyEnvelope(p["envelope.json"], keyID, pub)
	if err != nil {
		return v, err
	}
	if !bytes.Equal(payload, p["statement.json"]) {
		return v, errors.New("statement.json is not the envelope's payload")
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return v, fmt.Errorf("statement: %w", err)
	}
	sum := sha256.Sum256(payload)
	v.Statement = "sha256:" + hex.EncodeToString(sum[:])
	if v.Leaf, err = Leaf(st.PredicateType, v.Statement); err != nil {
		return v, err
	}
	if got, ok := p["log-entry.json"]; ok && !bytes.Equal(got, v.Leaf) {
		return v, fmt.Errorf("log-entry.json is %q, the statement's leaf is %q", got, v.Leaf)
	}
	v.LeafHash = LeafHash(v.Leaf)
	if v.Checkpoint, err = VerifyCheckpoint(p["checkpoint"], verifierKey); err != nil {
		return v, err
	}
	var proof struct {
		Index  string   `json:"index"`
		Hashes []string `json:"hashes"`
	}
	if err := json.Unmarshal(p["proof.json"], &proof); err != nil {
		return v, fmt.Errorf("proof.json: %w", err)
	}
	if v.Index, err = strconv.ParseUint(proof.Index, 10, 64); err != nil {
		return v, fmt.Errorf("proof.json: index: %w", err)
	}
	hashes, err := DecodeHashes(proof.Hashes)
	if err != nil {
		return v, err
	}
	root, err := RootFromInclusionProof(v.Index, v.Checkpoint.Size, v.LeafHash, hashes)
	if err != nil {
		return v, err
	}
	if root != v.Checkpoint.Root {
		return v, fmt.Errorf("the proof leads to root %x, the checkpoint's is %x", root, v.Checkpoint.Root)
	}
	return v, nil
}

// KeyID reads a PKIX PEM public key, Ed25519 or ECDSA P-256, and names it:
// the hex SHA-256 of its DER.
func KeyID(pemBytes []byte) (string, any, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PUBLIC KEY" {
		return "", nil, errors.New(`the signing key is not a PEM "PUBLIC KEY"`)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("signing key: %w", err)
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:]), pub, nil
}

// PAE is DSSE's pre-authentication encoding, the bytes a signature signs.
func PAE(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// VerifyEnvelope checks the signature of key keyID over the PAE of the
// envelope's payload, and returns the payload.
func VerifyEnvelope(envelope []byte, keyID string, pub any) ([]byte, error) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("envelope: payloadType %q", env.PayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("envelope: payload: %w", err)
	}
	for _, s := range env.Signatures {
		if s.KeyID != keyID {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, fmt.Errorf("envelope: sig: %w", err)
		}
		pae := PAE(env.PayloadType, payload)
		var ok bool
		switch k := pub.(type) {
		case ed25519.PublicKey:
			ok = ed25519.Verify(k, pae, sig)
		case *ecdsa.PublicKey:
			digest := sha256.Sum256(pae)
			ok = ecdsa.VerifyASN1(k, digest[:], sig)
		default:
			return nil, fmt.Errorf("a %T signs no Stella envelope", pub)
		}
		if !ok {
			return nil, fmt.Errorf("the signature of key %s does not verify", keyID)
		}
		return payload, nil
	}
	return nil, fmt.Errorf("no signature by key %s", keyID)
}

// Leaf is the log entry of a statement of predicateType whose digest is
// statement: RFC 8785 JSON, which for these plain ASCII values is the
// members in this order with no white space.
func Leaf(predicateType, statement string) ([]byte, error) {
	for _, s := range []string{predicateType, statement} {
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r > 0x7e }) {
			return nil, fmt.Errorf("%q would need escaping, which no Stella leaf has", s)
		}
	}
	return fmt.Appendf(nil, `{"_type":"%s","predicateType":"%s","statement":"%s"}`, LogEntryType, predicateType, statement), nil
}

// LeafHash is the RFC 6962 hash of a leaf.
func LeafHash(leaf []byte) [32]byte {
	return sha256.Sum256(append([]byte{0}, leaf...))
}

// NodeHash is the RFC 6962 hash of an inner node.
func NodeHash(left, right [32]byte) [32]byte {
	return sha256.Sum256(append(append([]byte{1}, left[:]...), right[:]...))
}

// DecodeHashes reads a proof's hex hashes.
func DecodeHashes(hexes []string) ([][32]byte, error) {
	out := make([][32]byte, len(hexes))
	for i, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d %q is not 32 bytes of hex", i, h)
		}
		out[i] = [32]byte(b)
	}
	return out, nil
}

// RootFromInclusionProof is the root of a tree of size leaves that the
// proof leads to from the hash of leaf index: RFC 9162, section 2.1.3.2.
func RootFromInclusionProof(index, size uint64, leafHash [32]byte, proof [][32]byte) ([32]byte, error) {
	if index >= size {
		return [32]byte{}, fmt.Errorf("index %d is not in a log of %d entries", index, size)
	}
	fn, sn, r := index, size-1, leafHash
	for _, p := range proof {
		if sn == 0 {
			return [32]byte{}, errors.New("the proof has more hashes than the tree has levels")
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return [32]byte{}, errors.New("the proof has fewer hashes than the tree has levels")
	}
	return r, nil
}

// Checkpoint is the body of a signed checkpoint.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [32]byte
}

// VerifierKey is a note verifier key, <name>+<key hash>+<key data>.
type VerifierKey struct {
	Name string
	Hash uint32
	Key  ed25519.PublicKey
}

// ParseVerifierKey reads a note verifier key of an Ed25519 key, checking
// its key hash.
func ParseVerifierKey(vkey string) (VerifierKey, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return VerifierKey{}, fmt.Errorf("verifier key %q: want <name>+<hash>+<key>", vkey)
	}
	hash, err1 := strconv.ParseUint(parts[1], 16, 32)
	data, err2 := base64.StdEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2); err != nil || len(parts[1]) != 8 || len(data) != 1+ed25519.PublicKeySize || data[0] != 1 {
		return VerifierKey{}, fmt.Errorf("verifier key %q: want an 8-hex-digit hash and base64 of 0x01 and an Ed25519 key", vkey)
	}
	if want := KeyHash(parts[0], data); uint32(hash) != want {
		return VerifierKey{}, fmt.Errorf("verifier key %q: hash %08x, its key's is %08x", vkey, hash, want)
	}
	return VerifierKey{Name: parts[0], Hash: uint32(hash), Key: ed25519.PublicKey(data[1:])}, nil
}

// KeyHash is the note key hash of a key named name whose data (algorithm
// byte and key) is data: the first 4 bytes of SHA-256(name, "\n", data).
func KeyHash(name string, data []byte) uint32 {
	sum := sha256.Sum256(append([]byte(name+"\n"), data...))
	return binary.BigEndian.Uint32(sum[:4])
}

// VerifyCheckpoint checks a signed checkpoint with a note verifier key and
// returns its body; the origin line must be the key's name.
func VerifyCheckpoint(signed []byte, verifierKey string) (Checkpoint, error) {
	key, err := ParseVerifierKey(verifierKey)
	if err != nil {
		return Checkpoint{}, err
	}
	split := bytes.LastIndex(signed, []byte("\n\n"))
	if split < 0 {
		return Checkpoint{}, errors.New("checkpoint: no blank line before the signatures")
	}
	text, sigs := signed[:split+1], string(signed[split+2:])
	verified := false
	for _, line := range strings.Split(strings.TrimSuffix(sigs, "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "\u2014 "+key.Name+" ")
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(sig) != 4+ed25519.SignatureSize || binary.BigEndian.Uint32(sig[:4]) != key.Hash {
			continue
		}
		if !ed25519.Verify(key.Key, text, sig[4:]) {
			return Checkpoint{}, fmt.Errorf("checkpoint: the signature of %s does not verify", key.Name)
		}
		verified = true
	}
	if !verified {
		return Checkpoint{}, fmt.Errorf("checkpoint: no signature by %s+%08x", key.Name, key.Hash)
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) < 4 || lines[0] != key.Name {
		return Checkpoint{}, fmt.Errorf("checkpoint: want the origin %s, then size and root", key.Name)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: size: %w", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("checkpoint: root %q is not base64 of 32 bytes", lines[2])
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: [32]byte(root)}, nil
}
