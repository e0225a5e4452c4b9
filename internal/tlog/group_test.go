package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// watchedFile is the log's entries file, counting its syncs and failing
// the ones the test asks to fail.
type watchedFile struct {
	entriesFile
	mu    sync.Mutex
	syncs int
	// beforeSync runs before sync n (1, 2, ...); an error it returns fails
	// that sync, after the file was synced all the same.
	beforeSync func(n int) error
	// tearWrites writes a little more than half of every write and fails
	// it, and then fails the truncate that would cut it: what the file
	// holds when the process dies in the middle of a write.
	tearWrites bool
}

func (f *watchedFile) Sync() error {
	f.mu.Lock()
	f.syncs++
	n, before := f.syncs, f.beforeSync
	f.mu.Unlock()
	var injected error
	if before != nil {
		injected = before(n)
	}
	return errors.Join(f.entriesFile.Sync(), injected)
}

func (f *watchedFile) Write(p []byte) (int, error) {
	if f.tearWrites {
		n, err := f.entriesFile.Write(p[:len(p)/2+7])
		return n, errors.Join(err, syscall.ENOSPC)
	}
	return f.entriesFile.Write(p)
}

func (f *watchedFile) Truncate(size int64) error {
	if f.tearWrites {
		return syscall.EIO
	}
	return f.entriesFile.Truncate(size)
}

func (f *watchedFile) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

// watchedDir is the log's locked directory, counting its syncs: one for
// every checkpoint stored.
type watchedDir struct {
	lockedDir
	mu    sync.Mutex
	syncs int
}

func (d *watchedDir) Sync() error {
	d.mu.Lock()
	d.syncs++
	d.mu.Unlock()
	return d.lockedDir.Sync()
}

func (d *watchedDir) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncs
}

// watch puts counting wrappers around the files of l, which holds its lock.
func watch(l *Log) (*watchedFile, *watchedDir) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, d := &watchedFile{entriesFile: l.file}, &watchedDir{lockedDir: l.lock}
	l.file, l.lock = f, d
	return f, d
}

// queuedRequests is how many appends wait for a commit.
func (l *Log) queuedRequests() int {
	l.queueMu.Lock()
	defer l.queueMu.Unlock()
	return len(l.queued)
}

// checkIncluded checks inc as a verifier does: the checkpoint's signature
// and entry e's inclusion proof in it.
func checkIncluded(o Options, inc Inclusion, e []byte) error {
	cp, err := VerifyCheckpoint(inc.Checkpoint, origin, o.Verifier)
	if err != nil {
		return err
	}
	if cp.Size != inc.Size || inc.Index >= cp.Size {
		return fmt.Errorf("entry %d came with a checkpoint of %d entries, said to be %d", inc.Index, cp.Size, inc.Size)
	}
	return VerifyInclusion(cp, inc.Index, e, inc.Proof)
}

func TestConcurrentAppendsAreAllKeptAfterReopen(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	l := open(t, dir, o)
	const appenders, perAppender = 12, 20
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	ack := func(index uint64, e []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := acked[index]; ok && !bytes.Equal(prev, e) {
			return fmt.Errorf("index %d acknowledged for %s and for %s", index, prev, e)
		}
		acked[index] = e
		return nil
	}
	shared := []byte(`{"entry":"every appender logs this one"}`)
	var wg sync.WaitGroup
	errs := make(chan error, 3*appenders*perAppender)
	for a := range appenders {
		wg.Go(func() {
			for i := range perAppender {
				e := entry(a*perAppender + i)
				if a%2 == 0 {
					// Half the appenders log one entry at a time...
					index, err := l.Append(e)
					if err == nil {
						err = ack(index, e)
					}
					if err != nil {
						errs <- err
					}
					continue
				}
				// ...and half several, one of them logged by everyone.
				batch := [][]byte{e, shared}
				included, err := l.AppendAll(batch)
				if err != nil {
					errs <- err
					continue
				}
				for j, inc := range included {
					if err := errors.Join(checkIncluded(o, inc, batch[j]), ack(inc.Index, batch[j])); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if want := appenders*perAppender + 1; len(acked) != want {
		t.Fatalf("%d indexes acknowledged, want %d: one per entry, and one for the entry all appenders logged", len(acked), want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	reopened := open(t, dir, o)
	if got := reopened.Size(); got != uint64(len(acked)) {
		t.Fatalf("the reopened log has %d entries, want the %d acknowledged", got, len(acked))
	}
	cp, err := reopened.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := VerifyCheckpoint(cp, origin, o.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	for index, e := range acked {
		got, err := reopened.Entry(index)
		if err != nil || !bytes.Equal(got, e) {
			t.Fatalf("entry %d after reopening = %s, %v; want %s", index, got, err, e)
		}
		p, err := reopened.InclusionProof(index, parsed.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyInclusion(parsed, index, e, p); err != nil {
			t.Fatal(err)
		}
	}
}

// holdFirstCommit makes the first append's sync wait while n more appends
// queue behind it, then lets it go and waits for all of them: the n queued
// appends are then committed together, by whichever of them runs next.
// It returns each queued append's result, and the first one's.
func holdFirstCommit(t *testing.T, l *Log, f *watchedFile, n int, failSecond error) (Inclusion, []Inclusion, []error) {
	t.Helper()
	syncing, release := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	first := f.syncs + 1
	f.beforeSync = func(s int) error {
		switch s {
		case first:
			close(syncing)
			<-release
		case first + 1:
			return failSecond
		}
		return nil
	}
	f.mu.Unlock()
	var firstIncluded Inclusion
	var firstErr error
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		var included []Inclusion
		if included, firstErr = l.AppendAll([][]byte{entry(1000)}); firstErr == nil {
			firstIncluded = included[0]
		}
	}()
	<-syncing
	included, errs := make([]Inclusion, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var got []Inclusion
			if got, errs[i] = l.AppendAll([][]byte{entry(i)}); errs[i] == nil {
				included[i] = got[0]
			}
		})
	}
	for l.queuedRequests() < n {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	<-firstDone
	if firstErr != nil {
		t.Fatalf("the first append: %v", firstErr)
	}
	return firstIncluded, included, errs
}

func TestOneSyncAndOneCheckpointPerGroup(t *testing.T) {
	o := testOptions(t)
	l := open(t, t.TempDir(), o)
	f, d := watch(l)

	const queued = 15
	first, included, errs := holdFirstCommit(t, l, f, queued, nil)
	checkpoints := map[string]bool{string(first.Checkpoint): true}
	for i, inc := range included {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if err := checkIncluded(o, inc, entry(i)); err != nil {
			t.Fatal(err)
		}
		if inc.Size != queued+1 {
			t.Errorf("entry %d came with a checkpoint of %d entries, want %d: one for the whole group", inc.Index, inc.Size, queued+1)
		}
		checkpoints[string(inc.Checkpoint)] = true
	}
	if f.count() != 2 || d.count() != 2 || len(checkpoints) != 2 {
		t.Fatalf("%d appends, one alone and %d queued behind it: %d syncs of the entries, %d checkpoints stored, %d handed out; want 2 of each",
			queued+1, queued, f.count(), d.count(), len(checkpoints))
	}

	var batch [][]byte
	for i := range 10 {
		batch = append(batch, entry(100+i))
	}
	if _, err := l.AppendAll(batch); err != nil {
		t.Fatal(err)
	}
	if f.count() != 3 || d.count() != 3 {
		t.Fatalf("AppendAll of 10 entries: %d syncs and %d checkpoints in all, want one more of each (3)", f.count(), d.count())
	}
	// Entries the log holds already are answered from it.
	again, err := l.AppendAll(batch[:4])
	if err != nil {
		t.Fatal(err)
	}
	if f.count() != 3 || d.count() != 3 || again[3].Index != queued+1+3 {
		t.Fatalf("logging 4 entries again: entry 3 at %d, %d syncs, %d checkpoints; want index %d and nothing written",
			again[3].Index, f.count(), d.count(), queued+1+3)
	}
}

func TestFailedSyncFailsTheWholeGroup(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	l := open(t, dir, o)
	f, _ := watch(l)

	const queued = 8
	_, _, errs := holdFirstCommit(t, l, f, queued, syscall.EIO)
	for i, err := range errs {
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("append %d of the group whose sync failed: %v, want the sync's error", i, err)
		}
	}
	if l.Size() != 1 {
		t.Fatalf("after a failed sync the log has %d entries, want only the 1 acknowledged", l.Size())
	}
	entries, err := os.Stat(filepath.Join(dir, EntriesFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(fileMagic) + lengthSize + len(entry(1000)) + checksumSize); entries.Size() != want {
		t.Fatalf("the entries file has %d bytes after the failed group, want %d: the group's records cut off", entries.Size(), want)
	}
	// A retry appends where the failed group would have.
	if index, err := l.Append(entry(3)); err != nil || index != 1 {
		t.Fatalf("retrying an append of the failed group: %d, %v; want index 1", index, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := open(t, dir, o)
	if reopened.Size() != 2 {
		t.Fatalf("reopened: %d entries, want 2", reopened.Size())
	}
	for index, want := range [][]byte{entry(1000), entry(3)} {
		if got, err := reopened.Entry(uint64(index)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("entry %d after reopening = %s, %v; want %s", index, got, err, want)
		}
	}
}

// TestTornGroupIsCutOnReopen leaves the half-written records of a group in
// the file, as a process that dies in the middle of the write does: every
// append of the group fails, repair finds the acknowledged entries intact,
// and reopening keeps the whole records after them (never acknowledged, as
// Open keeps any) and cuts the torn one.
func TestTornGroupIsCutOnReopen(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	l := open(t, dir, o)
	for i := range 3 {
		if _, err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := watch(l)
	f.tearWrites = true
	var batch [][]byte
	for i := range 6 {
		batch = append(batch, entry(10+i))
	}
	if included, err := l.AppendAll(batch); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a torn write of a group: %v, %v; want it to fail with the write's error", included, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	report, err := Repair(dir, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !report.Intact || report.Entries != 3 {
		t.Fatalf("repair after a torn group: %+v; want the 3 acknowledged entries intact", report)
	}
	var lines logLines
	o.Log = funcr.New(lines.add, funcr.Options{})
	reopened := open(t, dir, o)
	// Six records of equal size, torn past the third.
	if reopened.Size() != 6 {
		t.Fatalf("reopened after a torn group: %d entries, want the 3 acknowledged and the 3 whole records after them", reopened.Size())
	}
	for i, want := range [][]byte{entry(0), entry(1), entry(2), entry(10), entry(11), entry(12)} {
		if got, err := reopened.Entry(uint64(i)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("entry %d after reopening = %s, %v; want %s", i, got, err, want)
		}
	}
	if !strings.Contains(lines.String(), "Cut a damaged tail") {
		t.Fatalf("reopening did not say it cut the torn record; it logged:\n%s", lines.String())
	}
	// Retrying the failed group logs each entry once.
	included, err := reopened.AppendAll(batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, inc := range included {
		if inc.Index != uint64(3+i) {
			t.Fatalf("retried entry %d at index %d, want %d", i, inc.Index, 3+i)
		}
		if err := checkIncluded(o, inc, batch[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAppendAfterATornGroupCutsItFirst goes on appending in the process
// whose group was torn and could not be cut: the next append cuts the torn
// records before writing, so that the log reopens with no damage among its
// acknowledged entries.
func TestAppendAfterATornGroupCutsItFirst(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	l := open(t, dir, o)
	if _, err := l.Append(entry(0)); err != nil {
		t.Fatal(err)
	}
	f, _ := watch(l)
	f.tearWrites = true
	batch := [][]byte{entry(1), entry(2), entry(3)}
	if _, err := l.AppendAll(batch); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a torn write of a group: %v; want it to fail with the write's error", err)
	}
	f.tearWrites = false
	included, err := l.AppendAll(batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, inc := range included {
		if inc.Index != uint64(1+i) {
			t.Fatalf("entry %d of the retried group at index %d, want %d", i, inc.Index, 1+i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var lines logLines
	o.Log = funcr.New(lines.add, funcr.Options{})
	reopened, err := Open(dir, o)
	if err != nil {
		t.Fatalf("reopening after a torn group and a good one: %v", err)
	}
	defer reopened.Close()
	if reopened.Size() != 4 || lines.String() != "" {
		t.Fatalf("reopened: %d entries, want 4, and it logged %q; want nothing to cut or keep", reopened.Size(), lines.String())
	}
	for i := range 4 {
		if got, err := reopened.Entry(uint64(i)); err != nil || !bytes.Equal(got, entry(i)) {
			t.Fatalf("entry %d after reopening = %s, %v; want %s", i, got, err, entry(i))
		}
	}
}

func TestAppendAllRefusesABadEntry(t *testing.T) {
	l := open(t, t.TempDir(), testOptions(t))
	for _, tc := range []struct {
		name    string
		entries [][]byte
		want    string
	}{
		{"empty alone", [][]byte{{}}, "a log entry has 1 to 65536 bytes, this one 0"},
		{"too large among others", [][]byte{entry(0), make([]byte, MaxEntrySize+1)}, "entry 1 of 2: a log entry has 1 to 65536 bytes, this one 65537"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.AppendAll(tc.entries); err == nil || err.Error() != tc.want {
				t.Fatalf("AppendAll: %v, want %q", err, tc.want)
			}
			if l.Size() != 0 {
				t.Fatalf("a refused AppendAll left %d entries; want none of them", l.Size())
			}
		})
	}
}
