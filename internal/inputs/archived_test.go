package inputs

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/scheme"
)

// archiveListReader is a ListReader that also reads an archive, as the
// promotion reconciler's reader does.
type archiveListReader struct {
	ListReader
	archived []archive.Entry
}

func (r archiveListReader) ArchivedInto(_ context.Context, namespace, environment string) ([]archive.Entry, error) {
	var out []archive.Entry
	for _, e := range r.archived {
		if e.Namespace == namespace && e.Environment == environment {
			out = append(out, e)
		}
	}
	return out, nil
}

func TestAReleaseSucceededUpstreamCountsWhenItsPromotionWasArchived(t *testing.T) {
	ctx := context.Background()
	// stage's history has moved on: it no longer shows shop-1.
	stage := &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "stage"},
		Status: v1alpha1.EnvironmentStatus{CurrentRelease: "shop-9", History: []v1alpha1.EnvironmentHistoryEntry{{Release: "shop-9", Phase: v1alpha1.PromotionSucceeded}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(stage).Build()
	archived := []archive.Entry{
		{Namespace: "ns", Environment: "stage", Name: "p1", Release: "shop-1", Phase: v1alpha1.PromotionSucceeded},
		{Namespace: "ns", Environment: "stage", Name: "p2", Release: "shop-2", Phase: v1alpha1.PromotionFailed},
		{Namespace: "other", Environment: "stage", Name: "p3", Release: "shop-3", Phase: v1alpha1.PromotionSucceeded},
	}
	for _, tc := range []struct {
		release string
		reader  Reader
		want    []string
	}{
		{"shop-1", archiveListReader{ListReader{c}, archived}, []string{"stage"}},
		{"shop-1", ListReader{c}, nil},                              // a reader of no archive: as before archives
		{"shop-2", archiveListReader{ListReader{c}, archived}, nil}, // it failed there
		{"shop-3", archiveListReader{ListReader{c}, archived}, nil}, // another namespace's
		{"shop-9", archiveListReader{ListReader{c}, archived}, []string{"stage"}},
	} {
		got, err := environmentsSucceeded(ctx, tc.reader, "ns", tc.release, []string{"stage"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s with %T succeeded in %v, want %v", tc.release, tc.reader, got, tc.want)
		}
	}
}
