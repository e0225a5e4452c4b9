package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"

	"github.com/stella-ops/stella/internal/pki"
)

// maxRepairTries bounds the orders of candidates Repair tries before it
// gives up: a few lost entries take a handful, many take a backup.
const maxRepairTries = 1 << 20

// RepairReport says what Repair did to a log.
type RepairReport struct {
	// Entries is the size of the stored checkpoint: the repaired log has
	// exactly these entries, and their root is the checkpoint's.
	Entries uint64
	// Intact is true when the checkpoint's entries were whole and nothing
	// was changed.
	Intact bool
	// FromFile counts the entries read back from the damaged file, some
	// with a damaged length field; Restored are the indexes of the entries
	// taken from the candidates.
	FromFile uint64
	Restored []uint64
	// Dropped counts the whole records found after the checkpoint's
	// entries: written, never acknowledged, left out.
	Dropped int
	// DamagedCopy is where the damaged entries file was kept.
	DamagedCopy string
}

// Repair rebuilds the entries file of the log in dir so that it holds
// exactly the entries its stored checkpoint signed, with that root. Every
// record still whole in the file is kept where it was; each lost entry is
// found among candidates (entries the log may have held, such as those
// derived from sealed evidence, in the order they were most likely logged)
// by trying them in the gaps, in that order first, until the root is the
// checkpoint's. It signs nothing: a log it cannot rebuild to the
// signed root is refused, never given a second root for a signed size. The
// damaged file is kept beside the new one. It holds the directory's lock,
// so it fails while a server has the log open.
func Repair(dir string, o Options, candidates [][]byte) (RepairReport, error) {
	d, err := lockDir(dir)
	if err != nil {
		return RepairReport{}, err
	}
	defer d.Close()
	stored, _, err := readCheckpoint(dir, o)
	if err != nil {
		return RepairReport{}, err
	}
	if stored == nil {
		return RepairReport{}, fmt.Errorf("%s has no stored checkpoint to rebuild the log against; restore the log directory from a backup", dir)
	}
	path := filepath.Join(dir, EntriesFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return RepairReport{}, err
	}
	parts := salvage(data)
	s := newSearch(stored, parts, candidates)
	if !s.fill(0, s.empty, 0) {
		if s.tries >= maxRepairTries {
			return RepairReport{}, fmt.Errorf("%s: gave up after %d orders of the %d candidate entries; restore the log directory from a backup", path, s.tries, len(s.pool))
		}
		return RepairReport{}, fmt.Errorf("%s: the %d whole records in the file and the %d candidate entries do not rebuild the %d entries of the stored checkpoint (root %s); restore the log directory from a backup",
			path, s.whole, len(s.pool), stored.Size, hex.EncodeToString(stored.Hash))
	}
	rebuilt := []byte(fileMagic)
	for _, e := range s.found {
		rebuilt = appendRecord(rebuilt, e.entry)
	}
	report := RepairReport{Entries: stored.Size, Dropped: s.whole - s.fromFile}
	for i, e := range s.found {
		if e.restored {
			report.Restored = append(report.Restored, uint64(i))
		} else {
			report.FromFile++
		}
	}
	if bytes.HasPrefix(data, rebuilt) {
		// Whatever follows is after the checkpoint: Open judges it.
		return RepairReport{Entries: stored.Size, Intact: true, FromFile: stored.Size}, nil
	}
	report.DamagedCopy = fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if data != nil {
		if err := pki.WriteFileAtomic(report.DamagedCopy, data, 0o600); err != nil {
			return RepairReport{}, fmt.Errorf("keep the damaged log: %w", err)
		}
	} else {
		report.DamagedCopy = ""
	}
	if err := pki.WriteFileAtomic(path, rebuilt, 0o600); err != nil {
		return RepairReport{}, fmt.Errorf("write the rebuilt log: %w", err)
	}
	if err := d.Sync(); err != nil {
		return RepairReport{}, fmt.Errorf("write the rebuilt log: sync %s: %w", dir, err)
	}
	return report, nil
}

// appendRecord appends entry's record to b.
func appendRecord(b, entry []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(entry)))
	b = append(b, entry...)
	sum := sha256.Sum256(entry)
	return append(b, sum[:]...)
}

// A part of a damaged entries file, in file order: a whole record, or the
// bytes between two whole records (a gap).
type part struct {
	entry []byte
	gap   []byte
}

// salvage finds every whole record in an entries file, in order, and the
// gaps between them. After the last whole record only a gap of more than
// the file's remaining bytes can follow, so the tail is not a part.
func salvage(data []byte) []part {
	var parts []part
	start := min(len(fileMagic), len(data))
	for p := start; p < len(data); {
		entry, n := recordAt(data, p)
		if entry == nil {
			p++
			continue
		}
		if p > start {
			parts = append(parts, part{gap: data[start:p]})
		}
		parts = append(parts, part{entry: entry})
		p += n
		start = p
	}
	return parts
}

// recordAt is the whole record at data[p:], if there is one, and its size.
func recordAt(data []byte, p int) ([]byte, int) {
	if len(data)-p < lengthSize+1+checksumSize {
		return nil, 0
	}
	size := int(binary.BigEndian.Uint32(data[p:]))
	end := p + lengthSize + size + checksumSize
	if size == 0 || size > MaxEntrySize || end > len(data) {
		return nil, 0
	}
	entry := data[p+lengthSize : end-checksumSize]
	if sum := sha256.Sum256(entry); !bytes.Equal(sum[:], data[end-checksumSize:end]) {
		return nil, 0
	}
	return entry, end - p
}

// lengthDamaged reads a gap as one record whose length field alone is
// damaged: the entry and its checksum still agree.
func lengthDamaged(gap []byte) []byte {
	if len(gap) < lengthSize+1+checksumSize {
		return nil
	}
	entry := gap[lengthSize : len(gap)-checksumSize]
	if sum := sha256.Sum256(entry); !bytes.Equal(sum[:], gap[len(gap)-checksumSize:]) {
		return nil
	}
	return entry
}

type foundEntry struct {
	entry    []byte
	restored bool
}

// search fills the gaps of a salvaged file with candidates until the
// first stored.Size entries have the stored root.
type search struct {
	stored *log.Checkpoint
	parts  []part
	pool   [][]byte
	used   []bool
	rf     *compact.RangeFactory
	empty  *compact.Range
	// whole counts the whole records of the file; fromFile those the
	// rebuilt log kept.
	whole, fromFile int
	found           []foundEntry
	tries           int
}

func newSearch(stored *log.Checkpoint, parts []part, candidates [][]byte) *search {
	s := &search{stored: stored, parts: parts, rf: &compact.RangeFactory{Hash: hasher.HashChildren}}
	s.empty = s.rf.NewEmptyRange(0)
	inFile := map[[sha256.Size]byte]bool{}
	for i, p := range parts {
		if p.entry == nil {
			if e := lengthDamaged(p.gap); e != nil {
				s.parts[i] = part{entry: e}
			}
		}
		if e := s.parts[i].entry; e != nil {
			s.whole++
			inFile[sha256.Sum256(e)] = true
		}
	}
	for _, c := range candidates {
		sum := sha256.Sum256(c)
		if len(c) == 0 || len(c) > MaxEntrySize || inFile[sum] {
			continue
		}
		inFile[sum] = true
		s.pool = append(s.pool, c)
	}
	s.used = make([]bool, len(s.pool))
	return s
}

// fill builds the log from part i on, on top of rng; kept counts the
// file's records in it so far. It reports whether a whole log was found,
// which s.found then holds.
func (s *search) fill(i int, rng *compact.Range, kept int) bool {
	if s.tries >= maxRepairTries {
		return false
	}
	if rng.End() == s.stored.Size {
		s.tries++
		root, err := rng.GetRootHash(nil)
		if root == nil && err == nil {
			root = hasher.EmptyRoot()
		}
		if err == nil && bytes.Equal(root, s.stored.Hash) {
			s.fromFile = kept
			return true
		}
		return false
	}
	if i == len(s.parts) {
		// The entries after the last whole record are lost: any unused
		// candidates, in any order.
		return s.fillGap(nil, i, rng, kept)
	}
	p := s.parts[i]
	if p.entry != nil {
		return s.with(p.entry, false, rng, func(next *compact.Range) bool { return s.fill(i+1, next, kept+1) })
	}
	return s.fillGap(p.gap, i, rng, kept)
}

// fillGap tries the unused candidates in a gap: records whose sizes add
// up to its bytes exactly, or, after the last part (gap nil), as many as
// the checkpoint still lacks.
func (s *search) fillGap(gap []byte, i int, rng *compact.Range, kept int) bool {
	tail := gap == nil
	if rng.End() == s.stored.Size {
		return s.fill(i, rng, kept)
	}
	if !tail && len(gap) == 0 {
		return s.fill(i+1, rng, kept)
	}
	for c, entry := range s.pool {
		size := lengthSize + len(entry) + checksumSize
		if s.used[c] || (!tail && size > len(gap)) {
			continue
		}
		s.used[c] = true
		rest := gap
		if !tail {
			rest = gap[size:]
		}
		ok := s.with(entry, true, rng, func(next *compact.Range) bool { return s.fillGap(rest, i, next, kept) })
		s.used[c] = false
		if ok {
			return true
		}
	}
	return false
}

// with appends entry to a copy of rng and goes on with then; the entry is
// kept in s.found when then finds the log.
func (s *search) with(entry []byte, restored bool, rng *compact.Range, then func(*compact.Range) bool) bool {
	next, err := s.rf.NewRange(rng.Begin(), rng.End(), append([][]byte(nil), rng.Hashes()...))
	if err != nil {
		return false
	}
	if err := next.Append(hasher.HashLeaf(entry), nil); err != nil {
		return false
	}
	s.found = append(s.found, foundEntry{entry: entry, restored: restored})
	if then(next) {
		return true
	}
	s.found = s.found[:len(s.found)-1]
	return false
}
