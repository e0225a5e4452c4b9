package tlog

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"golang.org/x/mod/sumdb/note"
)

const origin = "stella.test/log"

// testOptions are the options of a log with a new checkpoint key, whose
// messages go to t's log.
func testOptions(t testing.TB) Options {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "stella-test")
	if err != nil {
		t.Fatal(err)
	}
	return keyOptions(t, skey, vkey)
}

func keyOptions(t testing.TB, skey, vkey string) Options {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Origin: origin, Signer: s, Verifier: v, Log: testr.NewWithInterface(t, testr.Options{})}
}

func entry(i int) []byte { return []byte(fmt.Sprintf(`{"entry":%d}`, i)) }

func open(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestProofsVerifyAtEverySize(t *testing.T) {
	o := testOptions(t)
	v := o.Verifier
	l := open(t, t.TempDir(), o)
	var checkpoints [][]byte
	for i := range 37 {
		index, err := l.Append(entry(i))
		if err != nil || index != uint64(i) {
			t.Fatalf("append %d: index %d, %v", i, index, err)
		}
		cp, err := l.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		checkpoints = append(checkpoints, cp)
	}
	for size := uint64(1); size <= 37; size++ {
		cp, err := VerifyCheckpoint(checkpoints[size-1], origin, v)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != size {
			t.Fatalf("checkpoint %d has size %d", size, cp.Size)
		}
		for index := uint64(0); index < size; index++ {
			p, err := l.InclusionProof(index, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(cp, index, entry(int(index)), p); err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if err := VerifyInclusion(cp, index, entry(int(index)+1), p); err == nil {
				t.Fatalf("size %d: entry %d verified with another entry's content", size, index)
			}
		}
		for older := uint64(1); older <= size; older++ {
			oldCP, _ := VerifyCheckpoint(checkpoints[older-1], origin, v)
			p, err := l.ConsistencyProof(older, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(oldCP, cp, p); err != nil {
				t.Fatalf("%d → %d: %v", older, size, err)
			}
		}
	}
	if _, err := l.InclusionProof(37, 37); err == nil {
		t.Error("a proof of an entry beyond the log was given")
	}
	other := testOptions(t).Verifier
	if _, err := VerifyCheckpoint(checkpoints[0], origin, other); err == nil {
		t.Error("a checkpoint verified with another key")
	}
}

func TestReopenKeepsEntriesAndRoot(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	l := open(t, dir, o)
	for i := range 10 {
		if _, err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	again, err := l.Append(entry(3))
	if err != nil || again != 3 || l.Size() != 10 {
		t.Fatalf("appending entry 3 again gave index %d, size %d, %v; want 3 and 10", again, l.Size(), err)
	}
	before, _ := l.Checkpoint()
	l.Close()
	r := open(t, dir, o)
	after, _ := r.Checkpoint()
	if string(before) != string(after) {
		t.Fatalf("checkpoint changed across a reopen:\n%s\n%s", before, after)
	}
	for i := range 10 {
		got, err := r.Entry(uint64(i))
		if err != nil || string(got) != string(entry(i)) {
			t.Fatalf("entry %d = %q, %v", i, got, err)
		}
	}
}

// recordOffset is where record i starts in a log of entry(0), entry(1)...
func recordOffset(i int) int {
	offset := len(fileMagic)
	for j := range i {
		offset += lengthSize + len(entry(j)) + checksumSize
	}
	return offset
}

// sixEntries makes a log of entry(0) to entry(5) in dir, closed, and
// returns its file's bytes and its checkpoint.
func sixEntries(t *testing.T, dir string, o Options) ([]byte, []byte) {
	t.Helper()
	l := open(t, dir, o)
	for i := range 6 {
		if index, err := l.Append(entry(i)); err != nil || index != uint64(i) {
			t.Fatalf("append %d: index %d, %v", i, index, err)
		}
	}
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	data, err := os.ReadFile(filepath.Join(dir, EntriesFile))
	if err != nil {
		t.Fatal(err)
	}
	return data, cp
}

// TestDamageToAcknowledgedEntriesIsRefused damages the entries a stored
// checkpoint covers in every way a disk or a person can, and checks that
// Open refuses, names the entry and the way out, and changes nothing.
func TestDamageToAcknowledgedEntriesIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   []string
	}{{
		name:   "the last 10 bytes cut off",
		damage: func(b []byte) []byte { return b[:len(b)-10] },
		want:   []string{"entry 5 at byte " + strconv.Itoa(recordOffset(5)), "checkpoint signed 6 entries", "cut short"},
	}, {
		name:   "the last record cut off whole",
		damage: func(b []byte) []byte { return b[:recordOffset(5)] },
		want:   []string{"holds 5 entries", "checkpoint signed 6", "entries 5 to 5 are missing"},
	}, {
		name:   "every entry cut off",
		damage: func(b []byte) []byte { return b[:len(fileMagic)] },
		want:   []string{"holds 0 entries", "entries 0 to 5 are missing"},
	}, {
		name:   "the entries file emptied",
		damage: func([]byte) []byte { return nil },
		want:   []string{"is empty, but the log's checkpoint signed 6 entries"},
	}, {
		name:   "a length over the limit in record 2",
		damage: func(b []byte) []byte { b[recordOffset(2)] ^= 0x40; return b },
		want:   []string{"entry 2 at byte " + strconv.Itoa(recordOffset(2)), "outside 1..65536"},
	}, {
		name:   "a length past the end of the file in record 2",
		damage: func(b []byte) []byte { b[recordOffset(2)+2] ^= 0x80; return b },
		want:   []string{"entry 2 at byte " + strconv.Itoa(recordOffset(2)), "length field is damaged"},
	}, {
		name:   "a shorter length in record 2",
		damage: func(b []byte) []byte { b[recordOffset(2)+3] ^= 0x01; return b },
		want:   []string{"entry 2 at byte " + strconv.Itoa(recordOffset(2)), "checksum"},
	}, {
		name:   "a flipped byte in the entry of record 2",
		damage: func(b []byte) []byte { b[recordOffset(2)+lengthSize+3] ^= 0xff; return b },
		want:   []string{"entry 2 at byte " + strconv.Itoa(recordOffset(2)), "checksum"},
	}, {
		name: "entry 2 altered with its checksum",
		damage: func(b []byte) []byte {
			at := recordOffset(2) + lengthSize
			altered := []byte(`{"entry":9}`)
			sum := sha256.Sum256(altered)
			copy(b[at:], altered)
			copy(b[at+len(altered):], sum[:])
			return b
		},
		want: []string{"the first 6 entries have the root", "an entry was altered"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			dir := t.TempDir()
			path := filepath.Join(dir, EntriesFile)
			good, _ := sixEntries(t, dir, o)
			damaged := tc.damage(bytes.Clone(good))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			// A replica that only reads the log refuses it as the writer does.
			for opener, open := range map[string]func(string, Options) (*Log, error){"Open": Open, "OpenShared": OpenShared} {
				_, err := open(dir, o)
				if err == nil {
					t.Fatalf("%s opened a log with damaged acknowledged entries", opener)
				}
				for _, want := range append(tc.want, path, "stella log repair", "restore the log directory from a backup") {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the refusal of %s does not say %q:\n%v", opener, want, err)
					}
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
					t.Errorf("%s of a damaged log changed it", opener)
				}
			}
		})
	}
}

// TestTornTailAfterTheCheckpointIsCut writes what a crash in the middle of
// an append leaves, and checks that Open cuts it, says what it cut, and
// gives the next entry the next index.
func TestTornTailAfterTheCheckpointIsCut(t *testing.T) {
	o := testOptions(t)
	messages := &logLines{}
	o.Log = funcr.New(messages.add, funcr.Options{})
	dir := t.TempDir()
	path := filepath.Join(dir, EntriesFile)
	good, cp := sixEntries(t, dir, o)

	// The length and half the entry made it to the disk.
	torn := append(bytes.Clone(good), 0, 0, 0, 40, '{', '"')
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	r := open(t, dir, o)
	if r.Size() != 6 {
		t.Fatalf("size after a torn append = %d, want 6", r.Size())
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, good) {
		t.Fatal("the torn record was not cut, or more was")
	}
	for _, want := range []string{"Cut a damaged tail", `"entry"=6`, fmt.Sprintf(`"offset"=%d`, len(good)), `"bytes"=6`} {
		if !strings.Contains(messages.String(), want) {
			t.Errorf("the log of the cut does not say %s:\n%s", want, messages)
		}
	}
	if again, _ := r.Checkpoint(); !bytes.Equal(again, cp) {
		t.Errorf("the checkpoint changed with the cut:\n%s\n%s", cp, again)
	}
	if index, err := r.Append(entry(6)); err != nil || index != 6 {
		t.Fatalf("append after the cut: %d, %v", index, err)
	}
	r.Close()

	// A damaged record written after the checkpoint: its append never
	// returned, so it goes, as a torn one does.
	l := open(t, dir, o)
	l.Close()
	data, _ := os.ReadFile(path)
	unacknowledged := binary.BigEndian.AppendUint32(bytes.Clone(data), uint32(len(entry(7))))
	unacknowledged = append(unacknowledged, entry(7)...)
	unacknowledged = append(unacknowledged, make([]byte, checksumSize)...)
	os.WriteFile(path, unacknowledged, 0o600)
	r = open(t, dir, o)
	if r.Size() != 7 {
		t.Fatalf("size after a damaged unacknowledged record = %d, want 7", r.Size())
	}
	if !strings.Contains(messages.String(), "checksum") {
		t.Errorf("the log of the cut does not say why:\n%s", messages)
	}
}

// TestIntactRecordsAfterTheCheckpointAreKept covers a crash between an
// append's record and its checkpoint: the record is whole, and kept.
func TestIntactRecordsAfterTheCheckpointAreKept(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	sixEntries(t, dir, o)
	cp, _ := os.ReadFile(filepath.Join(dir, CheckpointFile))
	l := open(t, dir, o)
	l.Append(entry(6))
	l.Close()
	os.WriteFile(filepath.Join(dir, CheckpointFile), cp, 0o600)
	r := open(t, dir, o)
	if r.Size() != 7 {
		t.Fatalf("size = %d, want the 7 intact entries", r.Size())
	}
	stored, _ := os.ReadFile(filepath.Join(dir, CheckpointFile))
	parsed, err := VerifyCheckpoint(stored, origin, o.Verifier)
	if err != nil || parsed.Size != 7 {
		t.Fatalf("the stored checkpoint after the reopen: %v, %v; want one of 7 entries", parsed, err)
	}
}

// TestLogWithoutCheckpointIsAdopted opens a log of a data directory from
// before checkpoints were stored.
func TestLogWithoutCheckpointIsAdopted(t *testing.T) {
	o := testOptions(t)
	messages := &logLines{}
	o.Log = funcr.New(messages.add, funcr.Options{})
	dir := t.TempDir()
	good, cp := sixEntries(t, dir, o)
	os.Remove(filepath.Join(dir, CheckpointFile))
	os.WriteFile(filepath.Join(dir, EntriesFile), append(good, 0, 0), 0o600)
	l := open(t, dir, o)
	if l.Size() != 6 {
		t.Fatalf("size = %d, want 6", l.Size())
	}
	if !strings.Contains(messages.String(), "no stored checkpoint") || !strings.Contains(messages.String(), `"entries"=6`) {
		t.Errorf("the adoption was not logged:\n%s", messages)
	}
	l.Close()
	stored, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
	if err != nil || !bytes.Equal(stored, cp) {
		t.Fatalf("the stored checkpoint = %s, %v; want the log's\n%s", stored, err, cp)
	}
	// From now on the checkpoint guards the entries.
	os.WriteFile(filepath.Join(dir, EntriesFile), good[:len(good)-10], 0o600)
	if _, err := Open(dir, o); err == nil {
		t.Fatal("a cut log opened after its checkpoint was stored")
	}
}

func TestCheckpointOfAnotherKeyIsRefused(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	sixEntries(t, dir, o)
	other := testOptions(t)
	if _, err := Open(dir, other); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, CheckpointFile)) {
		t.Fatalf("opening with another checkpoint key: %v, want a refusal naming the checkpoint", err)
	}
}

func TestOneProcessWritesTheLog(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	l := open(t, dir, o)
	if _, err := Open(dir, o); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("a second open of an open log: %v", err)
	}
	l.Close()
	open(t, dir, o)
}

func TestOtherFileIsRefused(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, EntriesFile), []byte("something else\n"), 0o600)
	if _, err := Open(dir, o); err == nil || !strings.Contains(err.Error(), "not a Stella transparency log") {
		t.Fatalf("opening another file: %v", err)
	}
}

// logLines keeps what a funcr logger writes.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, prefix+" "+args)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestKillDuringAppends kills a process appending from several goroutines
// as fast as it can, so that groups are committed together and the kill
// may fall in the middle of one, and checks that every entry it
// acknowledged is in the log, and the log opens consistent.
func TestKillDuringAppends(t *testing.T) {
	if dir := os.Getenv("STELLA_TLOG_APPENDER"); dir != "" {
		first, err := strconv.Atoi(os.Getenv("STELLA_TLOG_FIRST"))
		if err != nil {
			t.Fatal(err)
		}
		appendForever(t, dir, os.Getenv("STELLA_TLOG_SKEY"), os.Getenv("STELLA_TLOG_VKEY"), first)
		return
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "stella-test")
	if err != nil {
		t.Fatal(err)
	}
	o := keyOptions(t, skey, vkey)
	dir := t.TempDir()
	// acked maps the index of every acknowledged entry to the entry.
	acked := map[uint64]int{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringAppends$")
		cmd.Env = append(os.Environ(), "STELLA_TLOG_APPENDER="+dir, "STELLA_TLOG_SKEY="+skey, "STELLA_TLOG_VKEY="+vkey,
			"STELLA_TLOG_FIRST="+strconv.Itoa(round*1_000_000))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ackedBefore := len(acked)
		lines := bufio.NewScanner(out)
		deadline := time.Now().Add(time.Duration(200+100*round) * time.Millisecond)
		for lines.Scan() {
			var index uint64
			var n int
			if _, err := fmt.Sscanf(lines.Text(), "%d %d", &index, &n); err == nil {
				acked[index] = n
			}
			if time.Now().After(deadline) {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if len(acked) == ackedBefore {
			t.Fatalf("round %d: the appenders acknowledged nothing", round)
		}
		l, err := Open(dir, o)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		cp, _ := l.Checkpoint()
		parsed, err := VerifyCheckpoint(cp, origin, o.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		for index, n := range acked {
			if got, err := l.Entry(index); err != nil || string(got) != string(entry(n)) {
				t.Fatalf("round %d: acknowledged entry %d = %q, %v; want %s", round, index, got, err, entry(n))
			}
			p, err := l.InclusionProof(index, parsed.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(parsed, index, entry(n), p); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
	}
}

// appendForever appends entry(first), entry(first+1)... from four
// goroutines, printing each one's index and number once it is
// acknowledged, until killed.
func appendForever(t *testing.T, dir, skey, vkey string, first int) {
	o := keyOptions(t, skey, vkey)
	o.Log = logr.Discard()
	l, err := Open(dir, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var next atomic.Int64
	next.Store(int64(first))
	var stdout sync.Mutex
	for range 4 {
		go func() {
			for {
				n := int(next.Add(1) - 1)
				index, err := l.Append(entry(n))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				stdout.Lock()
				fmt.Println(index, n)
				stdout.Unlock()
			}
		}()
	}
	select {}
}

func BenchmarkAppend(b *testing.B) {
	o := testOptions(b)
	o.Log = logr.Discard()
	l := open(b, b.TempDir(), o)
	f, d := watch(l)
	for i := 0; b.Loop(); i++ {
		if _, err := l.Append(entry(i)); err != nil {
			b.Fatal(err)
		}
	}
	reportSyncs(b, f, d)
}

// BenchmarkAppendParallel appends from 2 goroutines per CPU at once, as the
// evidence reconciler's 4 workers do on 2 cores.
func BenchmarkAppendParallel(b *testing.B) {
	o := testOptions(b)
	o.Log = logr.Discard()
	l := open(b, b.TempDir(), o)
	f, d := watch(l)
	var next atomic.Int64
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(entry(int(next.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportSyncs(b, f, d)
}

// reportSyncs reports the syncs of the entries file and the checkpoints
// stored per append: what group commit saves.
func reportSyncs(b *testing.B, f *watchedFile, d *watchedDir) {
	b.ReportMetric(float64(f.count())/float64(b.N), "syncs/op")
	b.ReportMetric(float64(d.count())/float64(b.N), "checkpoints/op")
}
