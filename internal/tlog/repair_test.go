package tlog

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRepairRebuildsTheSignedLog damages a log of six entries and repairs
// it from candidates: the sealed entries in a shuffled order, with one
// entry the log never held.
func TestRepairRebuildsTheSignedLog(t *testing.T) {
	candidates := [][]byte{entry(4), entry(99), entry(5), entry(0), entry(2), entry(3), entry(1)}
	for _, tc := range []struct {
		name       string
		damage     func(path string, b []byte)
		candidates [][]byte
		fromFile   uint64
		restored   []uint64
	}{{
		name:       "the last 10 bytes cut off",
		damage:     func(path string, b []byte) { os.WriteFile(path, b[:len(b)-10], 0o600) },
		candidates: candidates,
		fromFile:   5, restored: []uint64{5},
	}, {
		name:     "a flipped length in record 2, read back without candidates",
		damage:   func(path string, b []byte) { b[recordOffset(2)] ^= 0x40; os.WriteFile(path, b, 0o600) },
		fromFile: 6,
	}, {
		name:       "a flipped byte in the entry of record 2",
		damage:     func(path string, b []byte) { b[recordOffset(2)+lengthSize+3] ^= 0xff; os.WriteFile(path, b, 0o600) },
		candidates: candidates,
		fromFile:   5, restored: []uint64{2},
	}, {
		name: "records 1 and 2 flipped and the tail cut",
		damage: func(path string, b []byte) {
			b[recordOffset(1)+9] ^= 1
			b[recordOffset(2)+9] ^= 1
			os.WriteFile(path, b[:len(b)-3], 0o600)
		},
		candidates: candidates,
		fromFile:   3, restored: []uint64{1, 2, 5},
	}, {
		name:       "the entries file deleted",
		damage:     func(path string, _ []byte) { os.Remove(path) },
		candidates: candidates,
		restored:   []uint64{0, 1, 2, 3, 4, 5},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			dir := t.TempDir()
			path := filepath.Join(dir, EntriesFile)
			good, cp := sixEntries(t, dir, o)
			tc.damage(path, bytes.Clone(good))
			damaged, _ := os.ReadFile(path)
			if _, err := Open(dir, o); err == nil {
				t.Fatal("the damaged log opened")
			}
			report, err := Repair(dir, o, tc.candidates)
			if err != nil {
				t.Fatal(err)
			}
			if report.Entries != 6 || report.FromFile != tc.fromFile || !slices.Equal(report.Restored, tc.restored) || report.Intact {
				t.Errorf("report = %+v, want 6 entries, %d from the file, %v restored", report, tc.fromFile, tc.restored)
			}
			if report.DamagedCopy != "" {
				if kept, err := os.ReadFile(report.DamagedCopy); err != nil || !bytes.Equal(kept, damaged) {
					t.Errorf("the damaged file was not kept as it was at %s: %v", report.DamagedCopy, err)
				}
			}
			if repaired, _ := os.ReadFile(path); !bytes.Equal(repaired, good) {
				t.Error("the repaired file differs from the log before the damage")
			}
			l := open(t, dir, o)
			if again, _ := l.Checkpoint(); !bytes.Equal(again, cp) {
				t.Errorf("the checkpoint after the repair:\n%s\nwant the one signed before:\n%s", again, cp)
			}
			if index, err := l.Append(entry(6)); err != nil || index != 6 {
				t.Errorf("append after the repair: %d, %v", index, err)
			}
		})
	}
}

func TestRepairRefuses(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	path := filepath.Join(dir, EntriesFile)
	good, _ := sixEntries(t, dir, o)
	cut := good[:len(good)-10]
	os.WriteFile(path, cut, 0o600)

	// Without entry 5 among the candidates, no log has the signed root.
	_, err := Repair(dir, o, [][]byte{entry(0), entry(99), entry(6)})
	if err == nil || !strings.Contains(err.Error(), "do not rebuild the 6 entries of the stored checkpoint") {
		t.Fatalf("repair without the lost entry: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, cut) {
		t.Fatal("a refused repair changed the log")
	}

	// A log in use is not repaired under the server's feet.
	os.WriteFile(path, good, 0o600)
	l := open(t, dir, o)
	if _, err := Repair(dir, o, nil); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("repair of an open log: %v", err)
	}
	l.Close()

	// An intact log is left alone.
	report, err := Repair(dir, o, nil)
	if err != nil || !report.Intact || report.DamagedCopy != "" {
		t.Fatalf("repair of an intact log: %+v, %v", report, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, good) {
		t.Fatal("repairing an intact log changed it")
	}
}
