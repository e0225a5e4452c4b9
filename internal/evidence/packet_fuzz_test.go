package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// updateSeeds rewrites FuzzReadPacket's seed corpus from the packets the
// tests of this package build, valid and hostile:
//
//	go test ./internal/evidence -run '^FuzzReadPacket$' -update-seeds
var updateSeeds = flag.Bool("update-seeds", false, "write FuzzReadPacket's seed corpus to testdata/fuzz/FuzzReadPacket")

// FuzzReadPacket reads anything as a packet. Its corpus, in
// testdata/fuzz/FuzzReadPacket, holds packets the writer made, the hostile
// packets of TestReadPacketRefusesHostileMembers, and what fuzzing found.
func FuzzReadPacket(f *testing.F) {
	if *updateSeeds {
		writeSeeds(f)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &countingReader{r: bytes.NewReader(data)}
		p, err := ReadPacket(in)
		if in.n > MaxPacketSize {
			t.Fatalf("read %d bytes, more than the %d of a packet", in.n, MaxPacketSize)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("a refusal that does not call the packet malformed: %v", err)
			}
			return
		}
		total := 0
		for _, m := range packetMembers {
			content := memberData(t, p, m.name)
			if int64(len(content)) > m.max {
				t.Fatalf("accepted %s with %d bytes, more than its %d", m.name, len(content), m.max)
			}
			if m.name != FileProof { // the writer's proof.json, not the archive's
				total += len(content)
			}
		}
		if total > len(data) {
			t.Fatalf("accepted %d bytes of members from %d bytes of archive", total, len(data))
		}
		var again bytes.Buffer
		if err := p.WriteTar(&again); err != nil {
			t.Fatalf("an accepted packet cannot be written again: %v", err)
		}
		q, err := ReadPacket(&again)
		if err != nil {
			t.Fatalf("an accepted packet, written again, is refused: %v", err)
		}
		for _, m := range packetMembers {
			if before, after := memberData(t, p, m.name), memberData(t, q, m.name); !bytes.Equal(before, after) {
				t.Fatalf("%s changed on writing the packet again: %q, then %q", m.name, before, after)
			}
		}
	})
}

// memberData is the content of the member name of p, the proof as the
// writer writes it.
func memberData(t *testing.T, p *Packet, name string) []byte {
	switch name {
	case FileStatement:
		return p.Statement
	case FileEnvelope:
		return p.Envelope
	case FileLeaf:
		return p.Leaf
	case FileCheckpoint:
		return p.Checkpoint
	case FileSigningKey:
		return p.SigningKey
	case FileCheckpointKey:
		return p.CheckpointKey
	case FileObject:
		return p.Object
	case FileProof:
		data, err := json.MarshalIndent(p.Proof, "", "  ")
		if err != nil {
			t.Fatalf("marshal the proof: %v", err)
		}
		return data
	}
	t.Fatalf("no member %s", name)
	return nil
}

// writeSeeds writes the seed corpus: a sealed packet, the same cut short,
// a packet with only its required members, one with tiny members (small
// inputs mutate fastest), and the hostile packets small enough to mutate.
func writeSeeds(f *testing.F) {
	valid, _ := sealedPacket(f)
	seeds := map[string][]byte{"valid": valid, "truncated": valid[:len(valid)/2]}
	var required []tarEntry
	for _, e := range membersOf(f, valid) {
		if e.hdr.Name == FileStatement || e.hdr.Name == FileEnvelope || e.hdr.Name == FileCheckpoint || e.hdr.Name == FileProof {
			required = append(required, e)
		}
	}
	seeds["required-members-only"] = tarOf(f, required...)
	var small bytes.Buffer
	tiny := &Packet{Statement: []byte("{}"), Envelope: []byte("{}"), Checkpoint: []byte("c\n"), Proof: Proof{Index: "0", Hashes: []string{}}}
	if err := tiny.WriteTar(&small); err != nil {
		f.Fatal(err)
	}
	seeds["tiny-members"] = small.Bytes()
	for _, h := range hostilePackets(f, valid) {
		if len(h.packet) <= 64<<10 {
			seeds[strings.ReplaceAll(h.name, " ", "-")] = h.packet
		}
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReadPacket")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	for name, data := range seeds {
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data), 0o644); err != nil {
			f.Fatal(err)
		}
	}
}
