package scan

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stella-ops/stella/internal/evidence"
)

// VerifyDetached checks a detached signature over data with a PEM public key
// (ECDSA P-256 with SHA-256, or Ed25519), as `cosign sign-blob` and
// `openssl pkeyutl` make them. The signature may be raw or base64.
func VerifyDetached(data, sig, publicKeyPEM []byte, keySource string) error {
	pub, err := evidence.ParsePublicKey(publicKeyPEM, keySource)
	if err != nil {
		return err
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("%s: %w", keySource, err)
	}
	if decoded, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sig))); err == nil {
		sig = decoded
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(data)); err != nil {
		return fmt.Errorf("the signature does not verify with %s: %w", keySource, err)
	}
	return nil
}
