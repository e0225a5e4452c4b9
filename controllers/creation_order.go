package controllers

import (
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// creationOrder places an object among others of its kind in the order the
// storage created them. Creation timestamps cannot do that: they have whole
// seconds, so objects created within one second would tie, and each API
// server stamps them with its own clock. The storage revision can: etcd
// gives every write its own revision, one counter for the whole store, and
// Kubernetes defines the resource versions of one resource as integers that
// compare in that order (k8s.io/apimachinery/pkg/util/resourceversion). The
// reconcilers record it as status.creationRevision on their first write.
type creationOrder struct {
	// revision is the recorded creation revision, 0 when there is none: the
	// object was written before revisions were recorded, or by a storage
	// whose resource versions are not integers.
	revision uint64
	// at orders the objects without a revision among themselves.
	at time.Time
	// name is unique among the objects compared, so that no two tie.
	name string
}

// compare is negative when a was created before b. An object without a
// revision comes before every object with one, since revisions are recorded
// for all objects created since; among themselves such objects go by time.
func (a creationOrder) compare(b creationOrder) int {
	if (a.revision == 0) != (b.revision == 0) {
		if a.revision == 0 {
			return -1
		}
		return 1
	}
	if a.revision != b.revision {
		if a.revision < b.revision {
			return -1
		}
		return 1
	}
	if c := a.at.Compare(b.at); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// revisionOf reads a resource version as an etcd revision (an int64); any
// other value counts as none.
func revisionOf(resourceVersion string) uint64 {
	n, err := strconv.ParseUint(resourceVersion, 10, 63)
	if err != nil {
		return 0
	}
	return n
}

// promotionOrder is the promotion's place in its environment's queue. A
// promotion the reconciler has not written yet still has the revision it
// will record: that of its creation, or of a change since.
func promotionOrder(p *v1alpha1.Promotion) creationOrder {
	revision := p.Status.CreationRevision
	if revision == "" && p.Status.Phase == "" {
		revision = p.ResourceVersion
	}
	return creationOrder{revision: revisionOf(revision), at: p.CreationTimestamp.Time, name: p.Name}
}

// historyOrder is the place of an environment's history entry among the
// promotions that ran there: one at a time, in queue order.
func historyOrder(h v1alpha1.EnvironmentHistoryEntry) creationOrder {
	o := creationOrder{revision: revisionOf(h.CreationRevision), name: h.Promotion}
	if h.FinishedAt != nil {
		o.at = h.FinishedAt.Time
	}
	return o
}

// releaseOrder is the release's place among the releases of its namespace.
// A release the reconciler has not written yet still has the revision it
// will record.
func releaseOrder(rel *v1alpha1.Release) creationOrder {
	revision := rel.Status.CreationRevision
	if revision == "" && rel.Status.ObservedGeneration == 0 {
		revision = rel.ResourceVersion
	}
	return creationOrder{revision: revisionOf(revision), at: rel.CreationTimestamp.Time, name: rel.Name}
}
