package tlog

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const origin = "stella.test/log"

func noteKeys(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "stella-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func entry(i int) []byte { return []byte(fmt.Sprintf(`{"entry":%d}`, i)) }

func open(t testing.TB, dir string, s note.Signer) *Log {
	t.Helper()
	l, err := Open(dir, origin, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestProofsVerifyAtEverySize(t *testing.T) {
	s, v := noteKeys(t)
	l := open(t, t.TempDir(), s)
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
	_, other := noteKeys(t)
	if _, err := VerifyCheckpoint(checkpoints[0], origin, other); err == nil {
		t.Error("a checkpoint verified with another key")
	}
}

func TestReopenKeepsEntriesAndRoot(t *testing.T) {
	s, _ := noteKeys(t)
	dir := t.TempDir()
	l := open(t, dir, s)
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
	r := open(t, dir, s)
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

func TestTornTailIsCutAndDamageIsRefused(t *testing.T) {
	s, _ := noteKeys(t)
	dir := t.TempDir()
	path := filepath.Join(dir, EntriesFile)
	l := open(t, dir, s)
	for i := range 5 {
		if _, err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	good, _ := os.ReadFile(path)

	// A crash during an append: the length and half the entry made it.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0, 0, 0, 40, '{', '"'})
	f.Close()
	r := open(t, dir, s)
	if r.Size() != 5 {
		t.Fatalf("size after a torn append = %d, want 5", r.Size())
	}
	if index, err := r.Append(entry(5)); err != nil || index != 5 {
		t.Fatalf("append after the cut: %d, %v", index, err)
	}
	r.Close()

	// One flipped byte inside an acknowledged entry is damage, not a tear.
	damaged := append([]byte(nil), good...)
	damaged[len(fileMagic)+6] ^= 0xff
	os.WriteFile(path, damaged, 0o600)
	if _, err := Open(dir, origin, s); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("opening a damaged log: %v, want a checksum error", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(damaged) {
		t.Fatal("opening a damaged log changed it")
	}

	os.WriteFile(path, []byte("something else\n"), 0o600)
	if _, err := Open(dir, origin, s); err == nil || !strings.Contains(err.Error(), "not a Stella transparency log") {
		t.Fatalf("opening another file: %v", err)
	}
}

// TestKillDuringAppends kills a process appending as fast as it can, and
// checks that every entry it acknowledged is in the log, and the log opens
// consistent.
func TestKillDuringAppends(t *testing.T) {
	if dir := os.Getenv("STELLA_TLOG_APPENDER"); dir != "" {
		appendForever(dir)
		return
	}
	s, v := noteKeys(t)
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringAppends$")
		cmd.Env = append(os.Environ(), "STELLA_TLOG_APPENDER="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := -1
		lines := bufio.NewScanner(out)
		deadline := time.Now().Add(time.Duration(200+100*round) * time.Millisecond)
		for lines.Scan() {
			if n, err := strconv.Atoi(lines.Text()); err == nil {
				acked = n
			}
			if time.Now().After(deadline) {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if acked < 0 {
			t.Fatal("the appender acknowledged nothing")
		}
		l, err := Open(dir, origin, s)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if l.Size() < uint64(acked+1) {
			t.Fatalf("round %d: %d entries after the kill, but %d were acknowledged", round, l.Size(), acked+1)
		}
		for i := 0; i <= acked; i++ {
			if got, err := l.Entry(uint64(i)); err != nil || string(got) != string(entry(i)) {
				t.Fatalf("round %d: acknowledged entry %d = %q, %v", round, i, got, err)
			}
		}
		cp, _ := l.Checkpoint()
		parsed, err := VerifyCheckpoint(cp, origin, v)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := l.InclusionProof(uint64(acked), parsed.Size)
		if err := VerifyInclusion(parsed, uint64(acked), entry(acked), p); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
}

// appendForever appends entries after those present, printing each index
// once it is acknowledged, until killed.
func appendForever(dir string) {
	skey, _, err := note.GenerateKey(rand.Reader, "appender")
	if err != nil {
		panic(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	l, err := Open(dir, origin, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := int(l.Size()); ; i++ {
		if _, err := l.Append(entry(i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(i)
	}
}

func BenchmarkAppend(b *testing.B) {
	s, _ := noteKeys(b)
	l := open(b, b.TempDir(), s)
	for i := 0; b.Loop(); i++ {
		if _, err := l.Append(entry(i)); err != nil {
			b.Fatal(err)
		}
	}
}
