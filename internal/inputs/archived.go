package inputs

import (
	"context"
	"slices"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
)

// ArchiveReader is a Reader that also reads the archive of promotions that
// left the API (see internal/archive). A Reader without it judges where a
// release succeeded by the API's promotions and the environments'
// status.history alone, which forgets a release that is out of an
// environment's history once its promotion was archived.
type ArchiveReader interface {
	// ArchivedInto lists the archived promotions into environment.
	ArchivedInto(ctx context.Context, namespace, environment string) ([]archive.Entry, error)
}

// succeededInArchive says whether the archive holds a promotion of release
// into env that succeeded; false when r reads no archive.
func succeededInArchive(ctx context.Context, r Reader, ns, env, release string) (bool, error) {
	ar, ok := r.(ArchiveReader)
	if !ok {
		return false, nil
	}
	entries, err := ar.ArchivedInto(ctx, ns, env)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(entries, func(e archive.Entry) bool {
		return e.Release == release && e.Phase == v1alpha1.PromotionSucceeded
	}), nil
}
