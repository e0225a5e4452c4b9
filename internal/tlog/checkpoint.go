package tlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/transparency-dev/formats/log"

	"github.com/stella-ops/stella/internal/pki"
)

// CheckpointFile holds, in the log directory, the latest checkpoint the
// log signed. Open refuses a log shorter than it, or whose entries do not
// hash to its root: that is damage, not a torn append.
const CheckpointFile = "checkpoint"

// readCheckpoint reads and verifies the stored checkpoint of the log in
// dir; there is none in a new log, or one written before checkpoints were
// stored.
func readCheckpoint(dir string, o Options) (*log.Checkpoint, []byte, error) {
	path := filepath.Join(dir, CheckpointFile)
	signed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	cp, _, _, err := log.ParseCheckpoint(signed, o.Origin, o.Verifier)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w; it is damaged or not this log's checkpoint (origin %q, key %s): restore the log directory from a backup",
			path, err, o.Origin, o.Verifier.Name())
	}
	return cp, signed, nil
}

// writeCheckpoint replaces the stored checkpoint of the log directory d, so
// that after a crash it is either the old or the new one, whole.
func writeCheckpoint(d lockedDir, signed []byte) error {
	path := filepath.Join(d.Name(), CheckpointFile)
	if err := pki.WriteFileAtomic(path, signed, 0o600); err != nil {
		return fmt.Errorf("store the checkpoint %s: %w", path, err)
	}
	// The rename is durable once the directory is.
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store the checkpoint %s: sync the directory: %w", path, err)
	}
	return nil
}

// errInUse is lockDir's refusal of a log another process holds.
var errInUse = errors.New("in use by another process")

// lockRetry is how often Acquire tries the lock again while another
// process holds it.
const lockRetry = 200 * time.Millisecond

// lockDir opens the log directory and takes an exclusive lock on it, held
// until the directory is closed, so that two servers, or a server and
// `stella log repair`, never write one log at once. The lock is advisory
// (flock) and goes with the process, however it ends.
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the transparency log %s is %w (a running stella server?); stop it first", dir, errInUse)
		}
		return nil, fmt.Errorf("lock the transparency log %s: %w", dir, err)
	}
	return d, nil
}

// waitLockDir takes the lock of the log directory as lockDir does, trying
// again while another process holds it, until ctx ends.
func waitLockDir(ctx context.Context, dir string, log logr.Logger) (*os.File, error) {
	for waiting := false; ; waiting = true {
		d, err := lockDir(dir)
		if !errors.Is(err, errInUse) {
			return d, err
		}
		if !waiting {
			log.Info("Waiting for the transparency log's lock, which another process holds", "log", dir)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the lock of the transparency log %s: %w", dir, context.Cause(ctx))
		case <-time.After(lockRetry):
		}
	}
}
