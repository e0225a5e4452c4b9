package evidence

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
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
	FileLeaf          = "log-entry.json"
	FileSigningKey    = PublicKeyFile
	FileCheckpointKey = CheckpointVerifierFile
	FileObject        = "packet.json"
)

// MaxPacketSize bounds the bytes a verifier reads from an exported packet,
// tar headers included. It is more than every member at its own bound (see
// packetMembers) together with their headers, so a packet the writer can
// write always fits.
const MaxPacketSize = 8 << 20

// Bounds of the members that have no bound of their own elsewhere.
const (
	// maxSmallMember bounds the checkpoint, the proof, the log entry and
	// the two public keys: each is a few hundred bytes (a proof of a log of
	// 2^64 entries has 64 hashes).
	maxSmallMember = 64 << 10
	// maxObjectMember bounds the EvidencePacket as the server showed it: an
	// API object, which etcd keeps under 1.5 MiB.
	maxObjectMember = 2 << 20
)

// packetMember is one file of a packet.
type packetMember struct {
	name string
	// max is the most bytes it may hold.
	max int64
	// required members make a packet verifiable; the others are for people
	// and for verifiers that bring no keys of their own.
	required bool
}

// packetMembers are all the files a packet may hold, in the order WriteTar
// writes them. A packet holds nothing else.
var packetMembers = []packetMember{
	{FileStatement, MaxStatementSize, true},
	{FileEnvelope, MaxEnvelopeSize, true},
	{FileCheckpoint, maxSmallMember, true},
	{FileProof, maxSmallMember, true},
	// Packets exported before the leaf was have none; a verifier rebuilds
	// it from the statement.
	{FileLeaf, maxSmallMember, false},
	{FileSigningKey, maxSmallMember, false},
	{FileCheckpointKey, maxSmallMember, false},
	{FileObject, maxObjectMember, false},
}

// Packet is an exported evidence packet: everything needed to verify a
// sealed statement on a machine that never talked to the server.
type Packet struct {
	Statement  []byte
	Envelope   []byte
	Checkpoint []byte
	Proof      Proof
	// Leaf is the log's entry for the statement, the bytes whose RFC 6962
	// leaf hash the proof proves. Verify checks it is the statement's.
	Leaf []byte
	// SigningKey and CheckpointKey are the server's public keys, for
	// convenience: a careful verifier brings its own.
	SigningKey    []byte
	CheckpointKey []byte
	// Object is the EvidencePacket as the server showed it, for people.
	Object []byte
}

// WriteTar writes the packet as a tar archive with fixed order, times and
// modes, so that one packet always gives the same bytes. It refuses a
// member over its bound, which no verifier would read.
func (p *Packet) WriteTar(w io.Writer) error {
	proof, err := json.MarshalIndent(p.Proof, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{FileStatement: p.Statement, FileEnvelope: p.Envelope, FileCheckpoint: p.Checkpoint, FileProof: proof, FileLeaf: p.Leaf,
		FileSigningKey: p.SigningKey, FileCheckpointKey: p.CheckpointKey, FileObject: p.Object}
	tw := tar.NewWriter(w)
	for _, m := range packetMembers {
		data := files[m.name]
		if int64(len(data)) > m.max {
			return fmt.Errorf("packet member %s has %d bytes, more than the %d a verifier reads", m.name, len(data), m.max)
		}
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ReadPacket reads an exported packet, refusing a truncated, oversized or
// incomplete one, and any member that is not one of the packet's files as
// a regular file within its bound. A packet comes from anywhere, so every
// member is judged by its header before a byte of it is read, and no more
// than MaxPacketSize bytes are read in all.
func ReadPacket(r io.Reader) (*Packet, error) {
	in := &boundedReader{r: r, left: MaxPacketSize}
	buffered := bufio.NewReader(in)
	if magic, _ := buffered.Peek(len(gzipMagic)); bytes.Equal(magic, gzipMagic) {
		return nil, fmt.Errorf("%w: the packet is gzip-compressed; a packet is the plain tar archive 'stellactl evidence export' writes: decompress it first", ErrMalformed)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(buffered)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, in.explain(fmt.Errorf("%w: the packet is not a whole tar archive: %v", ErrMalformed, err))
		}
		m, err := checkMember(hdr, files)
		if err != nil {
			return nil, err
		}
		content := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, content); err != nil {
			return nil, in.explain(fmt.Errorf("%w: packet member %q is cut short: %v", ErrMalformed, m.name, err))
		}
		files[m.name] = content
	}
	var missing []string
	for _, m := range packetMembers {
		if _, ok := files[m.name]; m.required && !ok {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: the packet lacks %s", ErrMalformed, strings.Join(missing, ", "))
	}
	p := &Packet{Statement: files[FileStatement], Envelope: files[FileEnvelope], Checkpoint: files[FileCheckpoint], Leaf: files[FileLeaf],
		SigningKey: files[FileSigningKey], CheckpointKey: files[FileCheckpointKey], Object: files[FileObject]}
	if err := json.Unmarshal(files[FileProof], &p.Proof); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, FileProof, err)
	}
	if err := checkProofShape(p.Proof); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, FileProof, err)
	}
	return p, nil
}

// maxProofHashes is the most hashes a proof has: a Merkle tree of fewer
// than 2^64 leaves is at most 64 levels deep.
const maxProofHashes = 64

// maxProofField bounds each string of a proof: a hash is 64 hex digits,
// a log index or size at most 20 decimal ones.
const maxProofField = 64

// checkProofShape refuses a proof no log could have made, whose bulk would
// otherwise ride along into whatever writes the packet again.
func checkProofShape(proof Proof) error {
	if len(proof.Hashes) > maxProofHashes {
		return fmt.Errorf("%d hashes, more than the %d of a log with 2^64 entries", len(proof.Hashes), maxProofHashes)
	}
	for _, s := range append([]string{proof.Index, proof.From, proof.To, proof.Size}, proof.Hashes...) {
		if len(s) > maxProofField {
			return fmt.Errorf("a field of %d bytes, more than the %d of a hash", len(s), maxProofField)
		}
	}
	return nil
}

// gzipMagic starts every gzip stream.
var gzipMagic = []byte{0x1f, 0x8b}

// checkMember judges a member by its header, given the members read so
// far: it must be one of the packet's files, once, as a regular file that
// holds no more than that file's bound. Sparse files are refused because
// their holes read as zeros that the archive does not hold: a few bytes of
// header could claim gigabytes.
func checkMember(hdr *tar.Header, seen map[string][]byte) (packetMember, error) {
	refuse := func(why string, args ...any) error {
		return fmt.Errorf("%w: packet member %q %s; refused: a packet holds only the regular files %s, each once, as 'stellactl evidence export' writes them",
			ErrMalformed, hdr.Name, fmt.Sprintf(why, args...), memberNames())
	}
	switch {
	case path.IsAbs(hdr.Name):
		return packetMember{}, refuse("has an absolute path")
	case slices.Contains(strings.Split(hdr.Name, "/"), ".."):
		return packetMember{}, refuse("climbs out of the archive with ..")
	case isSparse(hdr):
		return packetMember{}, refuse("is a sparse file claiming %d bytes", hdr.Size)
	case hdr.Typeflag != tar.TypeReg:
		return packetMember{}, refuse("is %s", typeName(hdr.Typeflag))
	}
	i := slices.IndexFunc(packetMembers, func(m packetMember) bool { return m.name == hdr.Name })
	if i < 0 {
		return packetMember{}, refuse("is not one of them")
	}
	m := packetMembers[i]
	if _, ok := seen[m.name]; ok {
		return packetMember{}, refuse("appears twice")
	}
	if hdr.Size > m.max {
		return packetMember{}, refuse("has %d bytes, more than the %d allowed", hdr.Size, m.max)
	}
	return m, nil
}

// isSparse tells a GNU sparse member, old style or in PAX records, which
// archive/tar expands on reading.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// typeName names a tar member type for people.
func typeName(flag byte) string {
	switch flag {
	case tar.TypeSymlink:
		return "a symbolic link"
	case tar.TypeLink:
		return "a hard link"
	case tar.TypeDir:
		return "a directory"
	case tar.TypeChar, tar.TypeBlock:
		return "a device"
	case tar.TypeFifo:
		return "a FIFO"
	default:
		return fmt.Sprintf("of tar type %q", flag)
	}
}

func memberNames() string {
	names := make([]string, len(packetMembers))
	for i, m := range packetMembers {
		names[i] = m.name
	}
	return strings.Join(names, ", ")
}

// boundedReader reads at most left bytes from r, and remembers whether
// more were asked for.
type boundedReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

// errPacketTooLarge is what a boundedReader answers once it is spent.
var errPacketTooLarge = fmt.Errorf("%w: the packet is over %d bytes", ErrMalformed, MaxPacketSize)

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.exceeded = true
		return 0, errPacketTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// explain returns the packet's size as the cause of err when the packet
// ran over its bound, since the tar reader then only saw a short read.
func (b *boundedReader) explain(err error) error {
	if b.exceeded {
		return errPacketTooLarge
	}
	return err
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
// envelope is signed by a trusted key, the leaf (when the packet has one)
// is the statement's log entry, and the checkpoint's log holds it.
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
	if len(p.Leaf) > 0 {
		st, err := ParseStatement(p.Statement)
		if err != nil {
			return nil, err
		}
		entry, err := logEntry(st, DigestOf(p.Statement))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p.Leaf, entry) {
			return nil, fmt.Errorf("%w: %s is not the log entry of %s, which is %s", ErrDigestMismatch, FileLeaf, FileStatement, entry)
		}
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
