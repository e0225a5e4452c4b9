package evidence

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// ErrDigestMismatch is a packet whose parts do not agree: the statement is
// not the envelope's payload.
var ErrDigestMismatch = errors.New("digest mismatch")

// Files of an exported packet, in the order they are written.
const (
	FileStatement     = "statement.json"
	FileEnvelope      = "envelope.json"
	FileCheckpoint    = "checkpoint"
	FileProof         = "proof.json"
	FileSigningKey    = PublicKeyFile
	FileCheckpointKey = CheckpointVerifierFile
	FileObject        = "packet.json"
)

// MaxPacketSize bounds an exported packet a verifier reads.
const MaxPacketSize = 8 << 20

// Packet is an exported evidence packet: everything needed to verify a
// sealed statement on a machine that never talked to the server.
type Packet struct {
	Statement  []byte
	Envelope   []byte
	Checkpoint []byte
	Proof      Proof
	// SigningKey and CheckpointKey are the server's public keys, for
	// convenience: a careful verifier brings its own.
	SigningKey    []byte
	CheckpointKey []byte
	// Object is the EvidencePacket as the server showed it, for people.
	Object []byte
}

// WriteTar writes the packet as a tar archive with fixed order, times and
// modes, so that one packet always gives the same bytes.
func (p *Packet) WriteTar(w io.Writer) error {
	proof, err := json.MarshalIndent(p.Proof, "", "  ")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{FileStatement, p.Statement}, {FileEnvelope, p.Envelope}, {FileCheckpoint, p.Checkpoint}, {FileProof, proof},
		{FileSigningKey, p.SigningKey}, {FileCheckpointKey, p.CheckpointKey}, {FileObject, p.Object},
	} {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ReadPacket reads an exported packet, refusing a truncated, oversized or
// incomplete one.
func ReadPacket(r io.Reader) (*Packet, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxPacketSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxPacketSize {
		return nil, fmt.Errorf("%w: the packet is over %d bytes", ErrMalformed, MaxPacketSize)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: the packet is not a whole tar archive: %v", ErrMalformed, err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is cut short: %v", ErrMalformed, hdr.Name, err)
		}
		files[hdr.Name] = content
	}
	var missing []string
	for _, name := range []string{FileStatement, FileEnvelope, FileCheckpoint, FileProof} {
		if _, ok := files[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: the packet lacks %s", ErrMalformed, strings.Join(missing, ", "))
	}
	p := &Packet{Statement: files[FileStatement], Envelope: files[FileEnvelope], Checkpoint: files[FileCheckpoint],
		SigningKey: files[FileSigningKey], CheckpointKey: files[FileCheckpointKey], Object: files[FileObject]}
	if err := json.Unmarshal(files[FileProof], &p.Proof); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, FileProof, err)
	}
	return p, nil
}

// TrustOf is the trust of a packet's own public keys, for a verifier that
// has none of its own; signingKey and checkpointKey, when set, replace them.
func (p *Packet) TrustOf(signingKey, checkpointKey []byte) (Trust, error) {
	if signingKey == nil {
		signingKey = p.SigningKey
	}
	if checkpointKey == nil {
		checkpointKey = p.CheckpointKey
	}
	pub, err := ParsePublicKey(signingKey, "signing key")
	if err != nil {
		return Trust{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(checkpointKey)))
	if err != nil {
		return Trust{}, fmt.Errorf("%w: checkpoint key: %v", ErrMalformed, err)
	}
	t := Trust{Keys: Keys{}, Checkpoint: v}
	return t, t.Keys.Add(pub)
}

// Verify checks the packet: the statement is the envelope's payload, the
// envelope is signed by a trusted key, and the checkpoint's log holds it.
func (p *Packet) Verify(trust Trust) (*Statement, error) {
	var env Envelope
	if err := json.Unmarshal(p.Envelope, &env); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, FileEnvelope, err)
	}
	payload, _, err := Verify(p.Envelope, trust.Keys)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(payload, p.Statement) {
		return nil, fmt.Errorf("%w: %s has digest %s, the signed payload %s", ErrDigestMismatch, FileStatement, DigestOf(p.Statement), DigestOf(payload))
	}
	index, err := strconv.ParseUint(p.Proof.Index, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: index %q", ErrMalformed, FileProof, p.Proof.Index)
	}
	hashes, err := DecodeHashes(p.Proof.Hashes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, FileProof, err)
	}
	return VerifySealed(Sealed{Envelope: p.Envelope, LogIndex: index, Checkpoint: p.Checkpoint, InclusionProof: hashes}, trust)
}
