// Package evidence turns Stella's decisions and rollouts into evidence that
// an auditor can check on another machine: in-toto Statements in canonical
// JSON (RFC 8785), signed into DSSE envelopes with the server's key.
package evidence

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gowebpki/jcs"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
)

// PayloadType is the DSSE payload type of in-toto Statements.
const PayloadType = "application/vnd.in-toto+json"

// MaxEnvelopeSize bounds an envelope a verifier reads.
const MaxEnvelopeSize = 4 << 20

// Errors a verification fails with, so that callers (stellactl evidence
// verify and its exit codes) can tell them apart.
var (
	ErrMalformed    = errors.New("malformed evidence")
	ErrUnknownKey   = errors.New("signed by an unknown key")
	ErrBadSignature = errors.New("bad signature")
)

// Envelope is a DSSE envelope.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Signer signs payloads into envelopes with one key.
type Signer struct {
	dsse   signature.SignerVerifier
	keyID  string
	public crypto.PublicKey
}

// NewSigner signs with key, Ed25519 or ECDSA P-256 (with SHA-256).
func NewSigner(key crypto.Signer) (*Signer, error) {
	sv, err := signature.LoadSignerVerifier(key, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("load the signing key: %w", err)
	}
	id, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{dsse: sigdsse.WrapSignerVerifier(sv, PayloadType), keyID: id, public: key.Public()}, nil
}

// KeyID names the signer's public key.
func (s *Signer) KeyID() string { return s.keyID }

// Public is the signer's public key.
func (s *Signer) Public() crypto.PublicKey { return s.public }

// Sign returns the canonical JSON of an envelope of payload with one
// signature, its keyid set.
func (s *Signer) Sign(payload []byte) ([]byte, error) {
	raw, err := s.dsse.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("read the signed envelope: %w", err)
	}
	// The keyid is not signed (DSSE signs only the type and the payload);
	// sigstore leaves it empty, and verifiers use it to pick the key.
	for i := range env.Signatures {
		env.Signatures[i].KeyID = s.keyID
	}
	return canonicalJSON(env)
}

// Keys are the public keys a verifier trusts, by key ID.
type Keys map[string]crypto.PublicKey

// Add trusts pub.
func (k Keys) Add(pub crypto.PublicKey) error {
	id, err := KeyID(pub)
	if err != nil {
		return err
	}
	k[id] = pub
	return nil
}

// Verify checks the envelope's signature by a trusted key and returns the
// payload and the key that signed it.
func Verify(envelope []byte, keys Keys) ([]byte, string, error) {
	if len(envelope) > MaxEnvelopeSize {
		return nil, "", fmt.Errorf("%w: the envelope has %d bytes, more than the %d allowed", ErrMalformed, len(envelope), MaxEnvelopeSize)
	}
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(envelope))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, "", fmt.Errorf("%w: the envelope is not DSSE JSON: %v", ErrMalformed, err)
	}
	if env.PayloadType != PayloadType {
		return nil, "", fmt.Errorf("%w: payloadType is %q, want %q", ErrMalformed, env.PayloadType, PayloadType)
	}
	if _, err := base64.StdEncoding.DecodeString(env.Payload); err != nil {
		return nil, "", fmt.Errorf("%w: the payload is not base64: %v", ErrMalformed, err)
	}
	if len(env.Signatures) == 0 {
		return nil, "", fmt.Errorf("%w: the envelope has no signature", ErrMalformed)
	}
	var unknown []string
	for _, sig := range env.Signatures {
		pub, ok := keys[sig.KeyID]
		if !ok {
			unknown = append(unknown, sig.KeyID)
			continue
		}
		payload, err := verifyOne(env, sig, pub)
		if err != nil {
			return nil, "", err
		}
		return payload, sig.KeyID, nil
	}
	return nil, "", fmt.Errorf("%w: key IDs %q are not among the %d trusted keys", ErrUnknownKey, unknown, len(keys))
}

// verifyOne checks one signature with sigstore's DSSE verifier, on an
// envelope holding only that signature.
func verifyOne(env Envelope, sig Signature, pub crypto.PublicKey) ([]byte, error) {
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	// The key was picked by keyid already; sigstore's verifier has none
	// and skips a signature whose keyid is not its own.
	env.Signatures = []Signature{{Sig: sig.Sig}}
	single, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	var payload []byte
	dsse := sigdsse.WrapVerifier(v, sigdsse.WithExpectedPayloadType(PayloadType), sigdsse.WithDecodedPayload(&payload))
	if err := dsse.VerifySignature(bytes.NewReader(single), nil); err != nil {
		return nil, fmt.Errorf("%w (key %s): %v", ErrBadSignature, sig.KeyID, err)
	}
	return payload, nil
}

// canonicalJSON is v as RFC 8785 canonical JSON.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jcs.Transform(raw)
}
