package evidence

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"
	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/pki"
	"github.com/stella-ops/stella/internal/tlog"
)

// Layout of an evidence directory.
const (
	// CheckpointKeyFile is the Ed25519 key that signs the log's
	// checkpoints (signed notes are Ed25519 only, whatever signs packets).
	CheckpointKeyFile = "checkpoint.key"
	// CheckpointVerifierFile is its note verifier key, for verifiers.
	CheckpointVerifierFile = "checkpoint.vkey"
	logDir                 = "log"
	blobDir                = "blobs"
)

// LogEntryType is the type of the transparency log's entries.
const LogEntryType = "https://stella-ops.org/attestations/log-entry/v1"

// LogEntry is what the log holds for a sealed statement: its digest, which
// ties the entry to the envelope's payload. It depends on the statement
// alone, so sealing the same statement twice logs it once, whatever key
// signed it.
type LogEntry struct {
	Type          string          `json:"_type"`
	PredicateType string          `json:"predicateType"`
	Statement     v1alpha1.Digest `json:"statement"`
}

// logEntry is the log's entry for statement st, stored under digest.
func logEntry(st *Statement, digest v1alpha1.Digest) ([]byte, error) {
	return canonicalJSON(LogEntry{Type: LogEntryType, PredicateType: st.PredicateType, Statement: digest})
}

// Sealer signs statements, stores them with their envelopes and logs them.
type Sealer struct {
	dir      string
	signer   *Signer
	log      *tlog.Log
	origin   string
	verifier note.Verifier
	Store    BlobStore
}

// Seal is a sealed statement: where it is, who signed it, and the proof
// that the log holds it.
type Seal struct {
	KeyID          string
	Envelope       v1alpha1.Digest
	Statement      v1alpha1.Digest
	LogIndex       uint64
	Checkpoint     string
	InclusionProof []string
	EnvelopeURI    string
}

// OpenSealer opens the evidence directory dir, creating its keys, log and
// blob store on first use. Blobs go to store, or to the directory when it
// is nil. log hears what opening the transparency log changed.
//
// The log is opened for reading only, so that replicas may share dir: the
// sealer seals nothing until Acquire (or Start, while this replica holds
// the leader Lease) takes the log's lock.
func OpenSealer(dir string, store BlobStore, log logr.Logger) (*Sealer, error) {
	var key crypto.Signer
	var o tlog.Options
	err := underKeysLock(dir, func() (err error) {
		if key, err = LoadOrCreateSigningKey(dir); err != nil {
			return err
		}
		o, err = logOptions(dir, log)
		return err
	})
	if err != nil {
		return nil, err
	}
	signer, err := NewSigner(key)
	if err != nil {
		return nil, err
	}
	if store == nil {
		if store, err = NewFileStore(filepath.Join(dir, blobDir)); err != nil {
			return nil, err
		}
	}
	l, err := tlog.OpenShared(filepath.Join(dir, logDir), o)
	if err != nil {
		return nil, err
	}
	return &Sealer{dir: dir, signer: signer, log: l, origin: o.Origin, verifier: o.Verifier, Store: store}, nil
}

// OpenLog opens the transparency log of the evidence directory dir alone,
// for tools that read it while no server runs.
func OpenLog(dir string, log logr.Logger) (*tlog.Log, error) {
	var o tlog.Options
	err := underKeysLock(dir, func() (err error) {
		o, err = logOptions(dir, log)
		return err
	})
	if err != nil {
		return nil, err
	}
	return tlog.Open(filepath.Join(dir, logDir), o)
}

// logOptions open the transparency log of the evidence directory dir with
// its checkpoint key, made on first use.
func logOptions(dir string, log logr.Logger) (tlog.Options, error) {
	cpKey, err := loadOrCreateCheckpointKey(dir)
	if err != nil {
		return tlog.Options{}, err
	}
	origin, err := LogOrigin(cpKey.Public().(ed25519.PublicKey))
	if err != nil {
		return tlog.Options{}, err
	}
	noteSigner, verifier, vkey, err := NoteKeys(origin, cpKey)
	if err != nil {
		return tlog.Options{}, err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, CheckpointVerifierFile), []byte(vkey+"\n"), 0o644); err != nil {
		return tlog.Options{}, err
	}
	return tlog.Options{Origin: origin, Signer: noteSigner, Verifier: verifier, Log: log}, nil
}

// keysLockFile is locked (flock) while a process reads the evidence keys or
// makes them on first use, so that replicas starting together on one new
// evidence directory agree on one signing key and one log key.
const keysLockFile = ".keys.lock"

// underKeysLock runs fn while holding the keys lock of dir, waiting for it.
func underKeysLock(dir string, fn func() error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, keysLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the evidence keys in %s: %w", dir, err)
	}
	return fn() // closing f releases the lock
}

// LogOrigin names the log of a checkpoint key in its checkpoints.
func LogOrigin(pub ed25519.PublicKey) (string, error) {
	id, err := KeyID(pub)
	if err != nil {
		return "", err
	}
	return "stella-ops.org/evidence-log/" + id[:16], nil
}

func loadOrCreateCheckpointKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, CheckpointKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		out, err := pki.KeyPEM(key)
		if err != nil {
			return nil, err
		}
		return key, pki.WriteFileAtomic(path, out, 0o600)
	}
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(data, path)
	if err != nil {
		return nil, err
	}
	ed, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: checkpoints are signed with Ed25519 keys only", path)
	}
	return ed, nil
}

// Trust is what verifies this sealer's packets: its public keys.
func (s *Sealer) Trust() Trust {
	keys := Keys{}
	keys[s.signer.KeyID()] = s.signer.Public()
	return Trust{Keys: keys, Checkpoint: s.verifier}
}

// Close closes the log, letting its lock go.
func (s *Sealer) Close() error { return s.log.Close() }

// Acquire makes this process the one that seals: it takes the log's lock,
// waiting while another replica holds it (until ctx ends), and reads the
// log again, since that replica may have appended to it.
func (s *Sealer) Acquire(ctx context.Context) error { return s.log.Acquire(ctx) }

// Start seals from when it has the log's lock until ctx ends, then lets
// the lock go. The controller manager runs it only while this replica holds
// the leader Lease, and ends ctx when the Lease is lost, so that the
// replica that leads is the one that seals; the lock makes sure that no
// two replicas append at once, even while two believe they lead.
func (s *Sealer) Start(ctx context.Context) error {
	if err := s.Acquire(ctx); err != nil {
		if ctx.Err() != nil {
			// Stopped, or the Lease lost, while waiting: nothing to let go.
			return nil
		}
		return err
	}
	<-ctx.Done()
	return s.log.Release()
}

// NeedLeaderElection makes the controller manager run Start only on the
// replica that holds the leader Lease.
func (s *Sealer) NeedLeaderElection() bool { return true }

// KeyID names the key that signs envelopes.
func (s *Sealer) KeyID() string { return s.signer.KeyID() }

// Seal signs statement (canonical JSON of an in-toto Statement of Stella's),
// stores it and its envelope, and logs it once, however often it is sealed.
func (s *Sealer) Seal(statement []byte) (Seal, error) {
	st, err := ParseStatement(statement)
	if err != nil {
		return Seal{}, err
	}
	envelope, err := s.signer.Sign(statement)
	if err != nil {
		return Seal{}, err
	}
	stDigest, err := s.Store.Put(statement)
	if err != nil {
		return Seal{}, err
	}
	envDigest, err := s.Store.Put(envelope)
	if err != nil {
		return Seal{}, err
	}
	entry, err := logEntry(st, stDigest)
	if err != nil {
		return Seal{}, err
	}
	// AppendAll returns once a checkpoint covering the entry is stored, so
	// the index and checkpoint below are never lost by a restart. Seals from
	// other goroutines are logged in the same group: one sync and one
	// checkpoint for all of them.
	included, err := s.log.AppendAll([][]byte{entry})
	if errors.Is(err, tlog.ErrNotWriter) {
		return Seal{}, fmt.Errorf("log statement %s: %w; only the replica holding the leader Lease seals, once it has the log's lock", stDigest, err)
	}
	if err != nil {
		return Seal{}, fmt.Errorf("log statement %s: %w", stDigest, err)
	}
	inc := included[0]
	hashes := make([]string, len(inc.Proof))
	for i, h := range inc.Proof {
		hashes[i] = hex.EncodeToString(h)
	}
	return Seal{KeyID: s.signer.KeyID(), Envelope: envDigest, Statement: stDigest, LogIndex: inc.Index, Checkpoint: string(inc.Checkpoint),
		InclusionProof: hashes, EnvelopeURI: s.Store.URI(envDigest)}, nil
}
