package evidence

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/tlog"
)

// LogRepair is what RepairLog did.
type LogRepair struct {
	tlog.RepairReport
	// Statements counts the sealed statements found in the store;
	// Unreadable are the blobs that could not be read, left out.
	Statements int
	Unreadable []v1alpha1.Digest
}

// RepairLog rebuilds the transparency log of the evidence directory dir
// from the whole records its file still holds and the entries of the
// sealed statements in store (the directory's blobs when nil), so that it
// has the entries and the root of its stored checkpoint again. It signs
// nothing, and refuses a log it cannot rebuild to that root. A server must
// not have the log open.
func RepairLog(dir string, store BlobStore) (LogRepair, error) {
	if _, err := os.Stat(filepath.Join(dir, CheckpointKeyFile)); err != nil {
		return LogRepair{}, fmt.Errorf("the log's checkpoint key: %w", err)
	}
	o, err := logOptions(dir, logr.Discard())
	if err != nil {
		return LogRepair{}, err
	}
	if store == nil {
		if store, err = NewFileStore(filepath.Join(dir, blobDir)); err != nil {
			return LogRepair{}, err
		}
	}
	var r LogRepair
	entries, err := r.sealedEntries(store)
	if err != nil {
		return LogRepair{}, err
	}
	r.RepairReport, err = tlog.Repair(filepath.Join(dir, logDir), o, entries)
	return r, err
}

// sealedEntries are the log entries of the statements in store, in the
// order they were stored: Seal stores a statement just before it logs it,
// so this is the order they were most likely logged in.
func (r *LogRepair) sealedEntries(store BlobStore) ([][]byte, error) {
	blobs, err := store.List()
	if err != nil {
		return nil, fmt.Errorf("list the evidence blobs: %w", err)
	}
	var entries [][]byte
	for _, b := range blobs {
		data, err := store.Get(b.Digest)
		if err != nil {
			r.Unreadable = append(r.Unreadable, b.Digest)
			continue
		}
		st, err := ParseStatement(data)
		if err != nil {
			continue // an envelope, a scan report
		}
		entry, err := logEntry(st, b.Digest)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry)
	}
	r.Statements = len(entries)
	return entries, nil
}
