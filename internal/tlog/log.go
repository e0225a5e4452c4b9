// Package tlog is Stella's transparency log: an append-only RFC 6962 Merkle
// tree of evidence entries, kept in one file of the data directory, with
// signed checkpoints (C2SP tlog-checkpoint in a signed note) and inclusion
// and consistency proofs that anyone can check offline.
//
// One process writes the log at a time: the one holding the exclusive lock
// (flock) of the log directory. Open takes it at once; OpenShared opens the
// log for reading, following what the writer stores, until Acquire takes
// the lock (waiting while another process holds it) and reads the log
// again from the disk. Release gives the lock up. Append refuses to write
// without the lock, so that replicas sharing one directory never write it
// at once, whatever they believe about who leads.
//
// An entry is acknowledged once Append returns: its record was written and
// synced, and so was a signed checkpoint covering it (CheckpointFile, kept
// apart from the entries). Appends are committed in groups: appenders queue
// their entries, and whichever of them holds the log next writes every
// queued record at once, syncs the file once and stores one checkpoint
// covering them all, then answers each appender; a failed write or sync
// fails every append of its group, and none is acknowledged. A crash in
// the middle of an append leaves at most records beyond the stored checkpoint, which were never acknowledged: the
// next Open keeps the intact ones and cuts a damaged tail, and logs what it
// cut. Damage to an entry the stored checkpoint covers is refused, never
// repaired by dropping entries: restore the directory from a backup, or run
// `stella log repair`, which rebuilds the entries from the evidence store
// and never signs a second root for a size it signed before.
package tlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/go-logr/logr"
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

// RepairHint says how to recover a log whose acknowledged entries are
// damaged; every refusal of Open ends with it.
const RepairHint = "restore the log directory from a backup, or stop the server and run `stella log repair`, " +
	"which rebuilds the entries from the sealed statements in the evidence store"

var hasher = rfc6962.DefaultHasher

// Options open a log.
type Options struct {
	// Origin names the log in its checkpoints.
	Origin string
	// Signer signs checkpoints; Verifier checks the stored one on Open.
	Signer   note.Signer
	Verifier note.Verifier
	// Log hears what Open changed: a damaged tail it cut, entries it
	// adopted under a new checkpoint.
	Log logr.Logger
}

// maxBatch bounds the entries one commit writes, so that a group's records
// (at most maxBatch of MaxEntrySize) stay a modest buffer.
const maxBatch = 256

// ErrNotWriter refuses an append by a process that does not hold the
// log's lock.
var ErrNotWriter = errors.New("this process does not hold the transparency log's lock")

// Log is an open transparency log. It is safe for concurrent use.
type Log struct {
	o Options
	// path is the log directory.
	path string

	// queued are the appends waiting for a commit. queueMu guards them
	// alone, so that appenders queue while a commit holds mu.
	queueMu sync.Mutex
	queued  []*appendRequest

	mu sync.Mutex
	// lock is the log directory, open and locked, while this process
	// writes the log; nil while it only reads it.
	lock lockedDir
	// file is the entries file, open for writing under lock and for
	// reading otherwise; nil before a reader has found entries.
	file entriesFile
	// nodes[level][index] are the hashes of every perfect subtree, leaves
	// at level 0: enough to answer any proof without reading the file.
	nodes  [][][]byte
	rng    *compact.Range
	byLeaf map[[sha256.Size]byte]uint64
	// offsets[i] is where entry i's record starts in the file; end is
	// where the last one ends.
	offsets []int64
	end     int64
	// uncut is where a failed append had to be cut off the file when the
	// cut failed too, 0 otherwise (no record starts at 0, the magic does):
	// the next append cuts it first, so that no record is ever written
	// after a torn one.
	uncut int64
	// checkpoint is the latest signed checkpoint, as CheckpointFile holds
	// it, of checkpointSize entries. No other leaves the process.
	checkpoint     []byte
	checkpointSize uint64
}

// entriesFile is what the log does with its entries file (an *os.File).
type entriesFile interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Seeker
	io.Closer
	Name() string
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// lockedDir is what the log does with its directory (an *os.File) once
// locked: it syncs the directory after replacing the checkpoint.
type lockedDir interface {
	Name() string
	Sync() error
	Close() error
}

// Open opens the log in dir for writing, creating it when absent, and
// holds the directory's lock until Close or Release: when another process
// holds it, Open fails rather than wait.
func Open(dir string, o Options) (*Log, error) {
	l, err := newLog(dir, o)
	if err != nil {
		return nil, err
	}
	d, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if err := l.takeOver(d); err != nil {
		return nil, err
	}
	return l, nil
}

// OpenShared opens the log in dir for reading, without its lock, so that
// another process may write it meanwhile: every read first catches up with
// the checkpoint the writer stored last, and serves no entry beyond it.
// Damage to the entries that checkpoint covers is refused, as Open refuses
// it. Append is refused until Acquire.
func OpenShared(dir string, o Options) (*Log, error) {
	l, err := newLog(dir, o)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.follow(); err != nil {
		return nil, errors.Join(err, l.letGo())
	}
	return l, nil
}

func newLog(dir string, o Options) (*Log, error) {
	if o.Signer == nil || o.Verifier == nil {
		return nil, errors.New("a transparency log needs a checkpoint signer and verifier")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l := &Log{o: o, path: dir}
	l.forget()
	return l, nil
}

// forget empties the tree, before the log is read from the start.
func (l *Log) forget() {
	rf := &compact.RangeFactory{Hash: hasher.HashChildren}
	l.nodes, l.rng, l.byLeaf = nil, rf.NewEmptyRange(0), map[[sha256.Size]byte]uint64{}
	l.offsets, l.end, l.uncut = nil, 0, 0
	l.checkpoint, l.checkpointSize = nil, 0
}

// Acquire makes this process the log's writer: it takes the directory's
// lock, waiting while another process holds it until ctx ends, then reads
// the whole log again from the disk, since the last writer may have
// appended to it, as Open reads it (cutting an unacknowledged tail).
func (l *Log) Acquire(ctx context.Context) error {
	d, err := waitLockDir(ctx, l.path, l.o.Log)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lock != nil {
		d.Close()
		return fmt.Errorf("the transparency log %s is already held by this process", l.path)
	}
	if err := l.letGo(); err != nil {
		d.Close()
		return err
	}
	if err := l.takeOver(d); err != nil {
		return err
	}
	l.o.Log.Info("Took the transparency log's lock: this process appends to it now", "log", l.path, "entries", l.rng.End())
	return nil
}

// Release gives the lock up: appends are refused from now on, and reads
// follow the next writer. An append under way finishes first.
func (l *Log) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lock == nil {
		return nil
	}
	entries := l.rng.End()
	if err := l.letGo(); err != nil {
		return err
	}
	l.o.Log.Info("Released the transparency log's lock: this process appends no more", "log", l.path, "entries", entries)
	return nil
}

// letGo closes the entries file, lets the lock go if held, and forgets the
// tree: whatever is read next is read from the start of the file.
func (l *Log) letGo() error {
	var errs []error
	if l.file != nil {
		errs = append(errs, l.file.Close())
	}
	if l.lock != nil {
		errs = append(errs, l.lock.Close())
	}
	l.file, l.lock = nil, nil
	l.forget()
	return errors.Join(errs...)
}

// takeOver reads the log from the start under the directory's lock d,
// which it keeps; on failure it lets d go.
func (l *Log) takeOver(d *os.File) error {
	l.forget()
	l.lock = d
	if err := l.openLocked(); err != nil {
		return errors.Join(err, l.letGo())
	}
	return nil
}

func (l *Log) openLocked() error {
	o := l.o
	stored, signed, err := readCheckpoint(l.path, o)
	if err != nil {
		return err
	}
	path := filepath.Join(l.path, EntriesFile)
	flags := os.O_RDWR | os.O_CREATE
	if stored != nil && stored.Size > 0 {
		// Entries were acknowledged: a missing file is damage, not a new log.
		flags = os.O_RDWR
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is missing, but the log's checkpoint signed %d entries; %s", path, stored.Size, RepairHint)
	}
	if err != nil {
		return err
	}
	l.file = f
	if stored != nil {
		l.checkpoint, l.checkpointSize = signed, stored.Size
	}
	if err := l.load(path, stored); err != nil {
		return err
	}
	if stored == nil && l.rng.End() > 0 {
		// A data directory from before checkpoints were stored. Its intact
		// records are the log every checkpoint it ever signed covered (the
		// old Open cut only a torn last record, as load does here), so they
		// are adopted as they are, under a checkpoint stored from now on.
		o.Log.Info("The transparency log had no stored checkpoint; its intact entries are adopted under a new one", "log", path, "entries", l.rng.End())
	} else if l.rng.End() > l.checkpointSize {
		// Records written and synced by an append that stopped before its
		// checkpoint was stored: intact, never acknowledged, kept.
		o.Log.Info("The transparency log kept entries written after its last checkpoint", "log", path, "checkpointed", l.checkpointSize, "entries", l.rng.End())
	}
	return l.storeCheckpoint()
}

// follow catches a log this process does not write up with the checkpoint
// stored last, reading the entries it adds from the file. The writer
// stores a checkpoint only after the entries it covers are synced, and
// the file only grows while the entries of a stored checkpoint stay as
// they are, so the entries up to that checkpoint are always whole; a
// different file (a repaired one) is read from the start.
func (l *Log) follow() error {
	stored, signed, err := readCheckpoint(l.path, l.o)
	if err != nil || stored == nil || bytes.Equal(signed, l.checkpoint) {
		// Without a stored checkpoint nothing was acknowledged yet.
		return err
	}
	path := filepath.Join(l.path, EntriesFile)
	if stored.Size == 0 {
		l.checkpoint, l.checkpointSize = signed, 0
		return nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is missing, but the log's checkpoint signed %d entries; %s", path, stored.Size, RepairHint)
	}
	if err != nil {
		return err
	}
	if l.file != nil && sameFile(l.file, f) {
		f.Close()
	} else {
		if l.file != nil {
			l.file.Close()
		}
		l.forget()
		l.file = f
		magic := make([]byte, len(fileMagic))
		n, err := io.ReadFull(f, magic)
		if n == 0 && errors.Is(err, io.EOF) {
			return fmt.Errorf("%s is empty, but the log's checkpoint signed %d entries; %s", path, stored.Size, RepairHint)
		}
		if err != nil || string(magic) != fileMagic {
			return fmt.Errorf("%s is not a Stella transparency log (it does not start with %q)", path, fileMagic)
		}
		l.end = int64(len(fileMagic))
	}
	if stored.Size < l.rng.End() {
		return fmt.Errorf("%s: the stored checkpoint signs %d entries, fewer than the %d it signed before; %s", path, stored.Size, l.rng.End(), RepairHint)
	}
	r := bufio.NewReader(io.NewSectionReader(l.file, l.end, 1<<62))
	for offset := l.end; l.rng.End() < stored.Size; {
		entry, n, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s holds %d entries, but the log's checkpoint signed %d: entries %d to %d are missing; %s",
				path, l.rng.End(), stored.Size, l.rng.End(), stored.Size-1, RepairHint)
		}
		if err != nil {
			return acknowledgedDamage(path, stored, l.rng.End(), offset, err)
		}
		if err := l.add(entry, offset); err != nil {
			return err
		}
		offset += n
	}
	if err := l.checkRoot(path, stored); err != nil {
		return err
	}
	l.checkpoint, l.checkpointSize = signed, stored.Size
	return nil
}

// sameFile reports whether a and b are one file.
func sameFile(a entriesFile, b *os.File) bool {
	ai, err1 := a.Stat()
	bi, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(ai, bi)
}

// current brings a log this process does not write up to date.
func (l *Log) current() error {
	if l.lock != nil {
		return nil
	}
	return l.follow()
}

// load reads every record and rebuilds the tree. A damaged record among
// the entries the stored checkpoint covers is refused; one after them
// starts a tail of unacknowledged records, which is cut and logged.
func (l *Log) load(path string, stored *log.Checkpoint) error {
	info, err := l.file.Stat()
	if err != nil {
		return err
	}
	if info.Size() == 0 {
		if stored != nil && stored.Size > 0 {
			return fmt.Errorf("%s is empty, but the log's checkpoint signed %d entries; %s", path, stored.Size, RepairHint)
		}
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
		if stored != nil && l.rng.End() == stored.Size {
			if err := l.checkRoot(path, stored); err != nil {
				return err
			}
		}
		entry, n, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if err := l.cutTail(path, stored, offset, info.Size(), err); err != nil {
				return err
			}
			break
		}
		if err := l.add(entry, offset); err != nil {
			return err
		}
		offset += n
	}
	if stored != nil && l.rng.End() < stored.Size {
		return fmt.Errorf("%s holds %d entries (%d bytes), but the log's checkpoint signed %d: entries %d to %d are missing; %s",
			path, l.rng.End(), info.Size(), stored.Size, l.rng.End(), stored.Size-1, RepairHint)
	}
	_, err = l.file.Seek(offset, io.SeekStart)
	return err
}

// checkRoot compares the entries read so far with the stored checkpoint
// of as many entries: an entry altered along with its checksum changes the
// root.
func (l *Log) checkRoot(path string, stored *log.Checkpoint) error {
	root, err := l.root()
	if err != nil {
		return err
	}
	if !bytes.Equal(root, stored.Hash) {
		return fmt.Errorf("%s: the first %d entries have the root %s, but the log's checkpoint signed %s for them: an entry was altered; %s",
			path, stored.Size, hex.EncodeToString(root), hex.EncodeToString(stored.Hash), RepairHint)
	}
	return nil
}

// cutTail cuts the file at offset, where a record failed to read with
// cause, when no acknowledged entry starts there; otherwise it refuses,
// leaving the file as it is. Without a stored checkpoint only a record cut
// short is taken for a torn append.
func (l *Log) cutTail(path string, stored *log.Checkpoint, offset, size int64, cause error) error {
	index := l.rng.End()
	acknowledged := stored != nil && index < stored.Size
	if acknowledged {
		return acknowledgedDamage(path, stored, index, offset, cause)
	}
	if stored == nil && !errors.Is(cause, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s, entry %d at byte %d: %w; the log is damaged and was left as it is; %s", path, index, offset, describe(cause), RepairHint)
	}
	if err := l.file.Truncate(offset); err != nil {
		return fmt.Errorf("cut the damaged tail of %s at byte %d: %w", path, offset, err)
	}
	if err := l.file.Sync(); err != nil {
		return err
	}
	l.o.Log.Info("Cut a damaged tail off the transparency log: records written after its last checkpoint, never acknowledged",
		"log", path, "entry", index, "offset", offset, "bytes", size-offset, "reason", describe(cause).Error())
	return nil
}

// acknowledgedDamage refuses entry index, at offset, which failed to read
// with cause although the stored checkpoint covers it.
func acknowledgedDamage(path string, stored *log.Checkpoint, index uint64, offset int64, cause error) error {
	return fmt.Errorf("%s, entry %d at byte %d: %w; the log's checkpoint signed %d entries, so this one was acknowledged: the log is damaged and was left as it is; %s",
		path, index, offset, describe(cause), stored.Size, RepairHint)
}

// describe names a record cut short as such.
func describe(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the record runs past the end of the file (cut short, or its length field is damaged)")
	}
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
	l.end = offset + lengthSize + int64(len(entry)) + checksumSize
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

// Inclusion is where an appended entry is in the log, and the proof of it:
// its index, the signed checkpoint stored with it, of Size entries, and
// its inclusion proof in that checkpoint's tree. The entries of one group
// share the Checkpoint's bytes: read them, do not change them.
type Inclusion struct {
	Index      uint64
	Checkpoint []byte
	Size       uint64
	Proof      [][]byte
}

// appendRequest is one caller's entries, queued until a commit takes them.
type appendRequest struct {
	entries  [][]byte
	included []Inclusion
	err      error
	// done is set, under mu, by the commit that took the request.
	done bool
}

// Append adds entry and returns its index, once the entry and a signed
// checkpoint covering it are on disk. An entry already in the log is not
// added again: its index is returned, so that logging the same evidence
// twice (a retry after a crash) leaves one entry. Without the log's lock
// it writes nothing and fails with ErrNotWriter.
func (l *Log) Append(entry []byte) (uint64, error) {
	included, err := l.AppendAll([][]byte{entry})
	if err != nil {
		return 0, err
	}
	return included[0].Index, nil
}

// AppendAll adds entries as Append adds one, and returns where each one
// is, with its proof, once all of them and a signed checkpoint covering
// them are on disk. Appends from other goroutines that wait meanwhile are
// committed with them: one write, one sync and one checkpoint for all.
// Either every entry is acknowledged or the call fails.
func (l *Log) AppendAll(entries [][]byte) ([]Inclusion, error) {
	for i, entry := range entries {
		if len(entry) == 0 || len(entry) > MaxEntrySize {
			if len(entries) == 1 {
				return nil, fmt.Errorf("a log entry has 1 to %d bytes, this one %d", MaxEntrySize, len(entry))
			}
			return nil, fmt.Errorf("entry %d of %d: a log entry has 1 to %d bytes, this one %d", i, len(entries), MaxEntrySize, len(entry))
		}
	}
	if len(entries) == 0 {
		return nil, nil
	}
	req := &appendRequest{entries: entries}
	l.queueMu.Lock()
	l.queued = append(l.queued, req)
	l.queueMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	// Whoever holds mu commits what is queued, its own request among it
	// unless the commit of an earlier holder took it already.
	for !req.done {
		l.commit(l.takeBatch())
	}
	return req.included, req.err
}

// takeBatch takes the oldest queued requests, of at most maxBatch entries
// together unless the first one alone has more.
func (l *Log) takeBatch() []*appendRequest {
	l.queueMu.Lock()
	defer l.queueMu.Unlock()
	n, entries := 0, 0
	for n < len(l.queued) && (n == 0 || entries+len(l.queued[n].entries) <= maxBatch) {
		entries += len(l.queued[n].entries)
		n++
	}
	batch := l.queued[:n:n]
	l.queued = l.queued[n:]
	if len(l.queued) == 0 {
		l.queued = nil // let the backing array go
	}
	return batch
}

// commit writes the entries of batch, answering every request in it.
func (l *Log) commit(batch []*appendRequest) {
	included, err := l.commitEntries(batch)
	for _, req := range batch {
		req.done = true
		if err != nil {
			req.err = err
			continue
		}
		req.included, included = included[:len(req.entries):len(req.entries)], included[len(req.entries):]
	}
}

// commitEntries writes the records of the batch's entries that the log
// does not hold yet, syncs the file once, stores one checkpoint covering
// them, and returns every entry's inclusion in it, in the batch's order.
// A failed write or sync is cut off the file: nothing of the batch is in
// the tree then.
func (l *Log) commitEntries(batch []*appendRequest) ([]Inclusion, error) {
	if l.lock == nil {
		return nil, fmt.Errorf("append to %s: %w (Acquire takes it)", l.path, ErrNotWriter)
	}
	var indexes []uint64
	var records []byte
	var fresh [][]byte
	// An entry twice in one batch is written once, as an entry twice in
	// the log would be.
	batchLeaves := map[[sha256.Size]byte]uint64{}
	next := l.rng.End()
	for _, req := range batch {
		for _, entry := range req.entries {
			leaf := [sha256.Size]byte(hasher.HashLeaf(entry))
			index, ok := l.byLeaf[leaf]
			if !ok {
				index, ok = batchLeaves[leaf]
			}
			if !ok {
				index, batchLeaves[leaf] = next, next
				next++
				records = appendRecord(records, entry)
				fresh = append(fresh, entry)
			}
			indexes = append(indexes, index)
		}
	}
	if len(fresh) > 0 {
		if err := l.write(records, fresh); err != nil {
			return nil, err
		}
	}
	// A retry of an append whose checkpoint failed finds its entry in the
	// tree, and is acknowledged only once the checkpoint is stored.
	if err := l.storeCheckpoint(); err != nil {
		return nil, fmt.Errorf("the entries are written, but the checkpoint covering them is not: %w", err)
	}
	included := make([]Inclusion, len(indexes))
	for i, index := range indexes {
		nodes, err := proof.Inclusion(index, l.checkpointSize)
		if err != nil {
			return nil, err
		}
		hashes, err := l.hashes(nodes)
		if err != nil {
			return nil, err
		}
		included[i] = Inclusion{Index: index, Checkpoint: l.checkpoint, Size: l.checkpointSize, Proof: hashes}
	}
	return included, nil
}

// write appends records, those of entries, with one write and one sync,
// and puts the entries in the tree.
func (l *Log) write(records []byte, entries [][]byte) error {
	if l.uncut != 0 {
		if err := l.undo(l.uncut, nil); err != nil {
			return fmt.Errorf("cut the records of a failed append off %s: %w", l.file.Name(), err)
		}
	}
	offset, err := l.file.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := l.file.Write(records); err != nil {
		return l.undo(offset, err)
	}
	if err := l.file.Sync(); err != nil {
		return l.undo(offset, err)
	}
	for _, entry := range entries {
		if err := l.add(entry, offset); err != nil {
			return err
		}
		offset = l.end
	}
	return nil
}

// undo cuts a failed append off the file at offset, so that the next one
// starts where the last good record ends; when it cannot, the next append
// tries again first.
func (l *Log) undo(offset int64, cause error) error {
	l.uncut = offset
	if err := l.file.Truncate(offset); err != nil {
		return errors.Join(cause, err)
	}
	if _, err := l.file.Seek(offset, io.SeekStart); err != nil {
		return errors.Join(cause, err)
	}
	l.uncut = 0
	return cause
}

// Size is the number of entries, as this process last wrote or read them.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.End()
}

// Entry reads entry index from the file.
func (l *Log) Entry(index uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.current(); err != nil {
		return nil, err
	}
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

// Checkpoint is the signed checkpoint of the log as it is now, as stored
// in CheckpointFile. Only the writer signs one; a reader serves the one
// the writer stored last.
func (l *Log) Checkpoint() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lock == nil {
		if err := l.follow(); err != nil {
			return nil, err
		}
		if l.checkpoint == nil {
			return nil, fmt.Errorf("the transparency log %s has no stored checkpoint yet: its first writer stores one", l.path)
		}
	} else if err := l.storeCheckpoint(); err != nil {
		return nil, err
	}
	return bytes.Clone(l.checkpoint), nil
}

// root is the root hash of the tree as it is now.
func (l *Log) root() ([]byte, error) {
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if root == nil {
		root = hasher.EmptyRoot()
	}
	return root, nil
}

// storeCheckpoint signs a checkpoint of the log as it is now and stores it
// durably, unless the stored one covers every entry already.
func (l *Log) storeCheckpoint() error {
	if l.checkpoint != nil && l.checkpointSize == l.rng.End() {
		return nil
	}
	if l.rng.End() < l.checkpointSize {
		return fmt.Errorf("the log has %d entries, fewer than the %d its stored checkpoint signed", l.rng.End(), l.checkpointSize)
	}
	root, err := l.root()
	if err != nil {
		return err
	}
	cp := log.Checkpoint{Origin: l.o.Origin, Size: l.rng.End(), Hash: root}
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, l.o.Signer)
	if err != nil {
		return fmt.Errorf("sign the checkpoint of %d entries: %w", cp.Size, err)
	}
	if err := writeCheckpoint(l.lock, signed); err != nil {
		return err
	}
	l.checkpoint, l.checkpointSize = signed, cp.Size
	return nil
}

// InclusionProof proves that entry index is in the log of the given size.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.current(); err != nil {
		return nil, err
	}
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
	if err := l.current(); err != nil {
		return nil, err
	}
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

// Close closes the file and lets the lock go.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.letGo()
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
