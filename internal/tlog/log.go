// Package tlog is Stella's transparency log: an append-only RFC 6962 Merkle
// tree of evidence entries, kept in one file of the data directory, with
// signed checkpoints (C2SP tlog-checkpoint in a signed note) and inclusion
// and consistency proofs that anyone can check offline.
//
// An entry is durable once Append returns: it was written and synced. A
// crash in the middle of an append leaves at most a torn record at the end
// of the file, which the next Open cuts off; it was never acknowledged.
// Damage anywhere else is reported, never repaired by dropping entries.
package tlog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// EntriesFile holds the log's entries in the log directory.
const EntriesFile = "entries"

// MaxEntrySize bounds one entry; entries are small descriptions of
// evidence, never the evidence itself.
const MaxEntrySize = 64 << 10

// fileMagic starts the entries file, so that another file is never read as
// a log.
const fileMagic = "stella-tlog v1\n"

// A record is the entry's length (4 bytes, big-endian), the entry, and the
// sha256 of the entry.
const (
	lengthSize   = 4
	checksumSize = sha256.Size
)

var hasher = rfc6962.DefaultHasher

// Log is an open transparency log. It is safe for concurrent use.
type Log struct {
	origin string
	signer note.Signer

	mu   sync.Mutex
	file *os.File
	// nodes[level][index] are the hashes of every perfect subtree, leaves
	// at level 0: enough to answer any proof without reading the file.
	nodes  [][][]byte
	rng    *compact.Range
	byLeaf map[[sha256.Size]byte]uint64
	// offsets[i] is where entry i's record starts in the file.
	offsets []int64
}

// Open opens the log in dir, creating it when absent. origin names the log
// in its checkpoints; signer signs them.
func Open(dir, origin string, signer note.Signer) (*Log, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, EntriesFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	rf := &compact.RangeFactory{Hash: hasher.HashChildren}
	l := &Log{origin: origin, signer: signer, file: f, rng: rf.NewEmptyRange(0), byLeaf: map[[sha256.Size]byte]uint64{}}
	if err := l.load(path); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// load reads every record, rebuilds the tree, and cuts off a torn record
// at the end.
func (l *Log) load(path string) error {
	info, err := l.file.Stat()
	if err != nil {
		return err
	}
	if info.Size() == 0 {
		if _, err := l.file.Write([]byte(fileMagic)); err != nil {
			return err
		}
		return l.file.Sync()
	}
	r := bufio.NewReader(l.file)
	magic := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != fileMagic {
		return fmt.Errorf("%s is not a Stella transparency log (it does not start with %q)", path, fileMagic)
	}
	offset := int64(len(fileMagic))
	for {
		entry, n, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// A torn append: it was never acknowledged.
			if err := l.file.Truncate(offset); err != nil {
				return fmt.Errorf("cut the torn record at the end of %s: %w", path, err)
			}
			if err := l.file.Sync(); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("%s, entry %d at byte %d: %w; the log is damaged and was left as it is", path, len(l.offsets), offset, err)
		}
		if err := l.add(entry, offset); err != nil {
			return err
		}
		offset += n
	}
	_, err = l.file.Seek(offset, io.SeekStart)
	return err
}

// readRecord reads one record and says how many bytes it took. A record
// cut short is io.ErrUnexpectedEOF; none at all is io.EOF.
func readRecord(r io.Reader) ([]byte, int64, error) {
	var length [lengthSize]byte
	if n, err := io.ReadFull(r, length[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		return nil, 0, io.ErrUnexpectedEOF
	}
	size := binary.BigEndian.Uint32(length[:])
	if size == 0 || size > MaxEntrySize {
		return nil, 0, fmt.Errorf("the record length %d is outside 1..%d", size, MaxEntrySize)
	}
	body := make([]byte, int(size)+checksumSize)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, 0, io.ErrUnexpectedEOF
	}
	entry, sum := body[:size], body[size:]
	if want := sha256.Sum256(entry); !bytes.Equal(sum, want[:]) {
		return nil, 0, errors.New("the record's checksum does not match its content")
	}
	return entry, int64(lengthSize + len(body)), nil
}

// add puts an entry read or written at offset into the tree.
func (l *Log) add(entry []byte, offset int64) error {
	index := l.rng.End()
	leaf := hasher.HashLeaf(entry)
	l.store(compact.NewNodeID(0, index), leaf)
	if err := l.rng.Append(leaf, l.store); err != nil {
		return err
	}
	l.byLeaf[[sha256.Size]byte(leaf)] = index
	l.offsets = append(l.offsets, offset)
	return nil
}

func (l *Log) store(id compact.NodeID, hash []byte) {
	for uint(len(l.nodes)) <= id.Level {
		l.nodes = append(l.nodes, nil)
	}
	level := l.nodes[id.Level]
	if id.Index == uint64(len(level)) {
		l.nodes[id.Level] = append(level, hash)
	}
}

// Append adds entry and returns its index, once it is on disk. An entry
// already in the log is not added again: its index is returned, so that
// logging the same evidence twice (a retry after a crash) leaves one entry.
func (l *Log) Append(entry []byte) (uint64, error) {
	if len(entry) == 0 || len(entry) > MaxEntrySize {
		return 0, fmt.Errorf("a log entry has 1 to %d bytes, this one %d", MaxEntrySize, len(entry))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if index, ok := l.byLeaf[[sha256.Size]byte(hasher.HashLeaf(entry))]; ok {
		return index, nil
	}
	offset, err := l.file.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	record := make([]byte, 0, lengthSize+len(entry)+checksumSize)
	record = binary.BigEndian.AppendUint32(record, uint32(len(entry)))
	record = append(record, entry...)
	sum := sha256.Sum256(entry)
	record = append(record, sum[:]...)
	if _, err := l.file.Write(record); err != nil {
		return 0, l.undo(offset, err)
	}
	if err := l.file.Sync(); err != nil {
		return 0, l.undo(offset, err)
	}
	index := l.rng.End()
	return index, l.add(entry, offset)
}

// undo cuts a failed append off the file, so that the next one starts
// where the last good record ends.
func (l *Log) undo(offset int64, cause error) error {
	if err := l.file.Truncate(offset); err != nil {
		return errors.Join(cause, err)
	}
	_, err := l.file.Seek(offset, io.SeekStart)
	return errors.Join(cause, err)
}

// Size is the number of entries.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.End()
}

// Entry reads entry index from the file.
func (l *Log) Entry(index uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index >= uint64(len(l.offsets)) {
		return nil, fmt.Errorf("entry %d is beyond the log's %d entries", index, len(l.offsets))
	}
	r := io.NewSectionReader(l.file, l.offsets[index], lengthSize+MaxEntrySize+checksumSize)
	entry, _, err := readRecord(r)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	return entry, nil
}

// Checkpoint is the signed checkpoint of the log as it is now.
func (l *Log) Checkpoint() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if root == nil {
		root = hasher.EmptyRoot()
	}
	cp := log.Checkpoint{Origin: l.origin, Size: l.rng.End(), Hash: root}
	return note.Sign(&note.Note{Text: string(cp.Marshal())}, l.signer)
}

// InclusionProof proves that entry index is in the log of the given size.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size > l.rng.End() || index >= size {
		return nil, fmt.Errorf("no inclusion proof of entry %d in a log of %d entries: it has %d", index, size, l.rng.End())
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return l.hashes(nodes)
}

// ConsistencyProof proves that the log of size2 extends the log of size1.
func (l *Log) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size1 > size2 || size2 > l.rng.End() {
		return nil, fmt.Errorf("no consistency proof from %d to %d entries in a log of %d", size1, size2, l.rng.End())
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return l.hashes(nodes)
}

func (l *Log) hashes(nodes proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if id.Level >= uint(len(l.nodes)) || id.Index >= uint64(len(l.nodes[id.Level])) {
			return nil, fmt.Errorf("the log has no node %d.%d", id.Level, id.Index)
		}
		hashes[i] = l.nodes[id.Level][id.Index]
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.file.Close()
}

// LeafHash is the RFC 6962 hash of an entry, as proofs use it.
func LeafHash(entry []byte) []byte { return hasher.HashLeaf(entry) }

// VerifyCheckpoint checks a signed checkpoint of the log named origin with
// the log's note verifier, and returns it.
func VerifyCheckpoint(signed []byte, origin string, verifier note.Verifier) (*log.Checkpoint, error) {
	cp, _, _, err := log.ParseCheckpoint(signed, origin, verifier)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return cp, nil
}

// VerifyInclusion checks that entry is entry index of the checkpoint's log.
func VerifyInclusion(cp *log.Checkpoint, index uint64, entry []byte, inclusion [][]byte) error {
	if err := proof.VerifyInclusion(hasher, index, cp.Size, hasher.HashLeaf(entry), inclusion, cp.Hash); err != nil {
		return fmt.Errorf("inclusion proof of entry %d in %d entries (root %s): %w", index, cp.Size, hex.EncodeToString(cp.Hash), err)
	}
	return nil
}

// VerifyConsistency checks that the log of checkpoint newer extends the
// log of checkpoint older.
func VerifyConsistency(older, newer *log.Checkpoint, consistency [][]byte) error {
	if err := proof.VerifyConsistency(hasher, older.Size, newer.Size, consistency, older.Hash, newer.Hash); err != nil {
		return fmt.Errorf("consistency proof from %d to %d entries: %w", older.Size, newer.Size, err)
	}
	return nil
}
