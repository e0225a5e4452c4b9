package evidence

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/internal/tlog"
)

// More verification failures, each its own exit code in stellactl.
var (
	ErrBadCheckpoint = errors.New("bad checkpoint")
	ErrBadProof      = errors.New("bad inclusion proof")
)

// Sealed is a sealed statement as an offline verifier receives it.
type Sealed struct {
	Envelope       []byte
	LogIndex       uint64
	Checkpoint     []byte
	InclusionProof [][]byte
}

// Trust is what a verifier trusts: the keys that sign envelopes and the
// key that signs the log's checkpoints (its name is the log's origin).
type Trust struct {
	Keys       Keys
	Checkpoint note.Verifier
}

// VerifySealed checks a sealed statement offline: the envelope's signature
// by a trusted key, the statement, the checkpoint's signature, and the
// proof that the log of the checkpoint holds the statement's digest.
func VerifySealed(s Sealed, trust Trust) (*Statement, error) {
	payload, _, err := Verify(s.Envelope, trust.Keys)
	if err != nil {
		return nil, err
	}
	st, err := ParseStatement(payload)
	if err != nil {
		return nil, err
	}
	cp, err := tlog.VerifyCheckpoint(s.Checkpoint, trust.Checkpoint.Name(), trust.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	entry, err := logEntry(st, DigestOf(payload))
	if err != nil {
		return nil, err
	}
	if err := tlog.VerifyInclusion(cp, s.LogIndex, entry, s.InclusionProof); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	return st, nil
}
