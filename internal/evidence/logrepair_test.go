package evidence

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/stella-ops/stella/internal/tlog"
)

// sealSome seals n decisions into the evidence directory dir, with blobs
// in store (the directory's when nil), and returns their seals.
func sealSome(t *testing.T, dir string, store BlobStore, n int) []Seal {
	t.Helper()
	s := sealingSealer(t, dir, store, testr.New(t))
	defer s.Close()
	var seals []Seal
	for i := range n {
		st, err := DecisionStatement("shop", fmt.Sprintf("p-%d", i), release(), record())
		if err != nil {
			t.Fatal(err)
		}
		seal, err := s.Seal(st)
		if err != nil {
			t.Fatal(err)
		}
		seals = append(seals, seal)
	}
	return seals
}

// TestRepairLogFromSealedStatements damages the log of an evidence
// directory, checks that the sealer refuses it, and rebuilds it from the
// statements in the blob store: the same entries, the same signed root,
// every seal still verifies against the reopened log.
func TestRepairLogFromSealedStatements(t *testing.T) {
	for _, tc := range []struct {
		name     string
		damage   func(path string, b []byte)
		restored int
	}{
		{"the last 10 bytes cut off", func(path string, b []byte) { os.WriteFile(path, b[:len(b)-10], 0o600) }, 1},
		{"the entries file deleted", func(path string, _ []byte) { os.Remove(path) }, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			seals := sealSome(t, dir, nil, 5)
			path := filepath.Join(dir, logDir, tlog.EntriesFile)
			good, _ := os.ReadFile(path)
			tc.damage(path, bytes.Clone(good))
			if _, err := OpenSealer(dir, nil, testr.New(t)); err == nil || !strings.Contains(err.Error(), "stella log repair") {
				t.Fatalf("opening a damaged log: %v, want a refusal pointing to stella log repair", err)
			}

			r, err := RepairLog(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Entries != 5 || len(r.Restored) != tc.restored || r.Statements != 5 || len(r.Unreadable) != 0 {
				t.Errorf("repair = %+v, want 5 entries, %d restored from 5 statements", r, tc.restored)
			}
			if repaired, _ := os.ReadFile(path); !bytes.Equal(repaired, good) {
				t.Error("the repaired log differs from the log before the damage")
			}
			s := sealingSealer(t, dir, nil, testr.New(t))
			defer s.Close()
			cp, _ := s.log.Checkpoint()
			if string(cp) != seals[4].Checkpoint {
				t.Errorf("the checkpoint after the repair:\n%s\nwant the last one sealed:\n%s", cp, seals[4].Checkpoint)
			}
			st, _ := DecisionStatement("shop", "p-2", release(), record())
			if again, err := s.Seal(st); err != nil || again.LogIndex != seals[2].LogIndex {
				t.Errorf("sealing p-2 again: index %d, %v; want its old index %d", again.LogIndex, err, seals[2].LogIndex)
			}
		})
	}
}

// TestRepairLogRefusesWithoutTheStatement removes the statement of the
// lost entry from the store: nothing rebuilds the signed root, and the
// log is left as it was.
func TestRepairLogRefusesWithoutTheStatement(t *testing.T) {
	dir := t.TempDir()
	seals := sealSome(t, dir, nil, 3)
	path := filepath.Join(dir, logDir, tlog.EntriesFile)
	good, _ := os.ReadFile(path)
	os.WriteFile(path, good[:len(good)-10], 0o600)
	store, _ := NewFileStore(filepath.Join(dir, blobDir))
	os.Remove(store.path(seals[2].Statement))
	if _, err := RepairLog(dir, nil); err == nil || !strings.Contains(err.Error(), "restore the log directory from a backup") {
		t.Fatalf("repair without the lost statement: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, good[:len(good)-10]) {
		t.Fatal("a refused repair changed the log")
	}
}
