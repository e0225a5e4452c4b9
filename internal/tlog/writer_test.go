package tlog

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// logFiles are the bytes of the log's files, "" for a missing one.
func logFiles(t *testing.T, dir string) string {
	t.Helper()
	var files []string
	for _, name := range []string{EntriesFile, CheckpointFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		files = append(files, string(data))
	}
	return strings.Join(files, "\x00")
}

func openShared(t *testing.T, dir string, o Options) *Log {
	t.Helper()
	l, err := OpenShared(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestAppendWithoutTheLockIsRefused(t *testing.T) {
	refused := func(t *testing.T, l *Log, dir string) {
		t.Helper()
		before := logFiles(t, dir)
		index, err := l.Append(entry(6))
		if !errors.Is(err, ErrNotWriter) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("an append without the lock gave index %d, %v; want ErrNotWriter naming %s", index, err, dir)
		}
		if logFiles(t, dir) != before {
			t.Fatal("a refused append changed the log's files")
		}
	}
	t.Run("a new log", func(t *testing.T) {
		dir := t.TempDir()
		l := openShared(t, dir, testOptions(t))
		refused(t, l, dir)
		if _, err := l.Checkpoint(); err == nil || !strings.Contains(err.Error(), "no stored checkpoint yet") {
			t.Fatalf("the checkpoint of a log no writer opened yet: %v", err)
		}
	})
	t.Run("a log of six entries", func(t *testing.T) {
		o := testOptions(t)
		dir := t.TempDir()
		_, cp := sixEntries(t, dir, o)
		l := openShared(t, dir, o)
		refused(t, l, dir)
		if got, err := l.Checkpoint(); err != nil || !bytes.Equal(got, cp) {
			t.Fatalf("a reader's checkpoint = %s, %v; want the stored one:\n%s", got, err, cp)
		}
	})
	t.Run("after the lock was released", func(t *testing.T) {
		o := testOptions(t)
		dir := t.TempDir()
		sixEntries(t, dir, o)
		l := openShared(t, dir, o)
		if err := l.Acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		if index, err := l.Append(entry(6)); err != nil || index != 6 {
			t.Fatalf("append under the lock: %d, %v", index, err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		refused(t, l, dir)
		if got, err := l.Entry(6); err != nil || !bytes.Equal(got, entry(6)) {
			t.Fatalf("entry 6 read after the release = %q, %v", got, err)
		}
	})
}

// TestReaderServesOnlyWhatTheCheckpointCovers leaves a whole record after
// the checkpoint, as an append stopped before its checkpoint does: a
// reader must not serve it, since the writer may still cut it.
func TestReaderServesOnlyWhatTheCheckpointCovers(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	good, _ := sixEntries(t, dir, o)
	if err := os.WriteFile(filepath.Join(dir, EntriesFile), appendRecord(bytes.Clone(good), entry(6)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := openShared(t, dir, o)
	if _, err := l.Entry(6); err == nil {
		t.Fatal("a reader served an entry no checkpoint covers")
	}
	if _, err := l.InclusionProof(6, 7); err == nil {
		t.Fatal("a reader proved an entry no checkpoint covers")
	}
}

// TestSecondWriterReadsWhatTheFirstAppended hands the log from one writer
// to another, as a failover between replicas sharing the directory does:
// the second waits for the lock, then goes on from every entry the first
// appended, and the first serves what the second appends.
func TestSecondWriterReadsWhatTheFirstAppended(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	first := openShared(t, dir, o)
	waits := &logLines{}
	secondOptions := o
	secondOptions.Log = funcr.New(waits.add, funcr.Options{})
	second := openShared(t, dir, secondOptions)

	if err := first.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := first.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := first.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := second.Checkpoint(); err != nil || !bytes.Equal(got, cp) {
		t.Fatalf("the reader's checkpoint = %s, %v; want the writer's:\n%s", got, err, cp)
	}
	verified, err := VerifyCheckpoint(cp, origin, o.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := second.InclusionProof(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyInclusion(verified, 2, entry(2), proof); err != nil {
		t.Fatalf("the reader's proof of the writer's entry: %v", err)
	}

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := second.Acquire(cancelled); err == nil || !strings.Contains(err.Error(), "wait for the lock") {
		t.Fatalf("acquiring a log another writer holds: %v", err)
	}
	if _, err := Open(dir, o); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("opening a log another writer holds: %v", err)
	}

	acquired := make(chan error, 1)
	go func() { acquired <- second.Acquire(t.Context()) }()
	for !strings.Contains(waits.String(), "Waiting for the transparency log's lock") {
		time.Sleep(10 * time.Millisecond)
	}
	// Appended after the second last read the log: it must read it again
	// when it takes over.
	if _, err := first.Append(entry(3)); err != nil {
		t.Fatal(err)
	}
	handed, err := first.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}
	if index, err := second.Append(entry(3)); err != nil || index != 3 {
		t.Fatalf("the second writer appended the first's last entry again: index %d, %v; want 3", index, err)
	}
	if index, err := second.Append(entry(4)); err != nil || index != 4 {
		t.Fatalf("the second writer's first entry: index %d, %v; want 4", index, err)
	}
	if _, err := first.Append(entry(5)); !errors.Is(err, ErrNotWriter) {
		t.Fatalf("an append by the writer that released the lock: %v", err)
	}

	latest, err := second.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := first.Checkpoint(); err != nil || !bytes.Equal(got, latest) {
		t.Fatalf("the first writer, now reading, serves %s, %v; want the second's checkpoint:\n%s", got, err, latest)
	}
	older, err := VerifyCheckpoint(handed, origin, o.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := VerifyCheckpoint(latest, origin, o.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	consistency, err := first.ConsistencyProof(older.Size, newer.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(older, newer, consistency); err != nil {
		t.Fatalf("the log across the handover: %v", err)
	}
}
