// Package archive keeps the promotions that left the API: a record of each
// (the Promotion as it ended, its Approvals and its sealed EvidencePackets)
// stored content-addressed in the evidence store, and an index that lists
// an environment's archived promotions in order and finds one by name.
//
// Archiving is written in an order that a crash at any point can only
// repeat, never lose or duplicate: the record first, then the index entries
// (named by the promotion's UID, so writing one again replaces it with the
// same content), and only then may the API objects be deleted. The index
// lives in the evidence directory next to the transparency log, and like the
// log is written only by the replica holding the leader Lease.
package archive

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/pki"
)

// RecordAPIVersion versions the Record format; a reader refuses others.
const RecordAPIVersion = "stella-ops.org/archive/v1"

// DirName is the archive index's directory in an evidence directory.
const DirName = "archive"

// Record is an archived promotion: what the API held about it when it left.
// Its JSON is stored in the evidence store under its digest.
type Record struct {
	// APIVersion is RecordAPIVersion.
	APIVersion string `json:"apiVersion"`
	// Promotion as it ended: spec and status (decision, gates, targets'
	// outcomes), with its name, namespace, UID, labels, annotations and
	// creation time.
	Promotion v1alpha1.Promotion `json:"promotion"`
	// Approvals made for it, with whether they counted.
	Approvals []v1alpha1.Approval `json:"approvals,omitempty"`
	// EvidencePackets of it, sealed: the statements and envelopes they
	// name stay in the evidence store, and their log index, checkpoint and
	// inclusion proof are what an exported packet carries.
	EvidencePackets []v1alpha1.EvidencePacket `json:"evidencePackets,omitempty"`
}

// Entry is the index's line about one archived promotion: enough to list
// it, and where its record is.
type Entry struct {
	Namespace   string                  `json:"namespace"`
	Name        string                  `json:"name"`
	UID         types.UID               `json:"uid"`
	Environment string                  `json:"environment"`
	Release     string                  `json:"release"`
	Phase       v1alpha1.PromotionPhase `json:"phase"`
	// CreationRevision is the promotion's status.creationRevision: its
	// place in the environment's queue.
	CreationRevision string       `json:"creationRevision,omitempty"`
	CreatedAt        metav1.Time  `json:"createdAt"`
	FinishedAt       *metav1.Time `json:"finishedAt,omitempty"`
	// Record is the digest of the Record in the evidence store.
	Record v1alpha1.Digest `json:"record"`
}

// NewRecord is the record of promo with its approvals and packets, trimmed
// of what only the API server needs (managed fields, resource versions).
func NewRecord(promo *v1alpha1.Promotion, approvals []v1alpha1.Approval, packets []v1alpha1.EvidencePacket) Record {
	r := Record{APIVersion: RecordAPIVersion, Promotion: *promo.DeepCopy()}
	trim(&r.Promotion.ObjectMeta)
	r.Promotion.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Promotion"}
	for _, a := range approvals {
		a := *a.DeepCopy()
		trim(&a.ObjectMeta)
		a.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Approval"}
		r.Approvals = append(r.Approvals, a)
	}
	for _, p := range packets {
		p := *p.DeepCopy()
		trim(&p.ObjectMeta)
		p.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "EvidencePacket"}
		r.EvidencePackets = append(r.EvidencePackets, p)
	}
	// Listing order is the cache's; the record is the same whatever it was.
	slices.SortFunc(r.Approvals, func(a, b v1alpha1.Approval) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.EvidencePackets, func(a, b v1alpha1.EvidencePacket) int { return strings.Compare(a.Name, b.Name) })
	return r
}

// trim drops the metadata that means something only in the API server.
func trim(m *metav1.ObjectMeta) {
	*m = metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, Labels: m.Labels, Annotations: m.Annotations,
		CreationTimestamp: m.CreationTimestamp}
}

// Entry is the index entry of r stored under digest.
func (r *Record) Entry(digest v1alpha1.Digest) Entry {
	p := &r.Promotion
	return Entry{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Environment: p.Spec.Environment, Release: p.Spec.Release,
		Phase: p.Status.Phase, CreationRevision: p.Status.CreationRevision, CreatedAt: p.CreationTimestamp,
		FinishedAt: p.Status.FinishedAt.DeepCopy(), Record: digest}
}

// ParseRecord reads a stored record, refusing another format.
func ParseRecord(data []byte) (*Record, error) {
	r := &Record{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("archive record: %w", err)
	}
	if r.APIVersion != RecordAPIVersion {
		return nil, fmt.Errorf("archive record: apiVersion %q, this Stella reads %q", r.APIVersion, RecordAPIVersion)
	}
	return r, nil
}

// Archive stores records in an evidence blob store and indexes them in a
// directory.
type Archive struct {
	dir   string
	Store evidence.BlobStore
}

// Open opens the archive whose index is in dir (made on first use) and
// whose records are in store.
func Open(dir string, store evidence.BlobStore) (*Archive, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("archive index %s: %w", dir, err)
	}
	return &Archive{dir: dir, Store: store}, nil
}

// ErrNotArchived is a promotion the archive does not hold.
var ErrNotArchived = errors.New("not archived")

// Put archives r: stores the record, then its index entries, each synced
// to disk before Put returns. Archiving a promotion again (after a crash
// before its API objects were deleted) rewrites the same entries.
func (a *Archive) Put(r *Record) (Entry, error) {
	p := &r.Promotion
	if err := checkNames(p.Namespace, p.Spec.Environment, p.Name); err != nil {
		return Entry{}, err
	}
	if p.UID == "" || strings.ContainsAny(string(p.UID), `/\.`) {
		return Entry{}, fmt.Errorf("promotion %s/%s: uid %q cannot name an index entry", p.Namespace, p.Name, p.UID)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return Entry{}, err
	}
	digest, err := a.Store.Put(data)
	if err != nil {
		return Entry{}, fmt.Errorf("store the archive record of promotion %s/%s: %w", p.Namespace, p.Name, err)
	}
	entry := r.Entry(digest)
	line, err := json.Marshal(entry)
	if err != nil {
		return Entry{}, err
	}
	// By name first: an entry listed for the environment is always found
	// by name too.
	for _, dir := range []string{a.byName(p.Namespace, p.Name), a.byEnvironment(p.Namespace, p.Spec.Environment)} {
		if err := writeSynced(dir, string(p.UID)+".json", line); err != nil {
			return Entry{}, fmt.Errorf("index the archive record of promotion %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return entry, nil
}

// Has says whether the promotion with uid, of environment env, is archived
// and indexed: its API objects may go.
func (a *Archive) Has(namespace, env, name string, uid types.UID) (bool, error) {
	if err := checkNames(namespace, env, name); err != nil {
		return false, err
	}
	for _, dir := range []string{a.byName(namespace, name), a.byEnvironment(namespace, env)} {
		if _, err := os.Stat(filepath.Join(dir, string(uid)+".json")); errors.Is(err, os.ErrNotExist) {
			return false, nil
		} else if err != nil {
			return false, err
		}
	}
	return true, nil
}

// Environment lists the archived promotions of an environment, oldest
// first, in the order they ran.
func (a *Archive) Environment(namespace, env string) ([]Entry, error) {
	if err := checkNames(namespace, env, ""); err != nil {
		return nil, err
	}
	return readEntries(a.byEnvironment(namespace, env))
}

// Promotion lists the archived promotions named name, oldest first (a name
// is used again when a promotion is deleted and created again).
func (a *Archive) Promotion(namespace, name string) ([]Entry, error) {
	if err := checkNames(namespace, "", name); err != nil {
		return nil, err
	}
	return readEntries(a.byName(namespace, name))
}

// Latest is the record of the newest archived promotion named name, or
// ErrNotArchived.
func (a *Archive) Latest(namespace, name string) (*Record, Entry, error) {
	entries, err := a.Promotion(namespace, name)
	if err != nil {
		return nil, Entry{}, err
	}
	if len(entries) == 0 {
		return nil, Entry{}, fmt.Errorf("promotion %s/%s: %w", namespace, name, ErrNotArchived)
	}
	e := entries[len(entries)-1]
	r, err := a.Record(e.Record)
	return r, e, err
}

// Record reads the record stored under digest.
func (a *Archive) Record(digest v1alpha1.Digest) (*Record, error) {
	data, err := a.Store.Get(digest)
	if err != nil {
		return nil, err
	}
	return ParseRecord(data)
}

func (a *Archive) byName(namespace, name string) string {
	return filepath.Join(a.dir, namespace, "promotions", name)
}

func (a *Archive) byEnvironment(namespace, env string) string {
	return filepath.Join(a.dir, namespace, "environments", env)
}

// checkNames refuses names that are not Kubernetes names before they are
// used in paths; empty ones are not checked.
func checkNames(namespace, env, name string) error {
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", namespace, strings.Join(errs, "; "))
	}
	for _, n := range []struct{ field, value string }{{"environment", env}, {"promotion", name}} {
		if n.value == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(n.value); len(errs) > 0 {
			return fmt.Errorf("%s name %q: %s", n.field, n.value, strings.Join(errs, "; "))
		}
	}
	return nil
}

// writeSynced writes name in dir atomically and syncs dir, so that the
// entry outlives a crash of the machine, not only of the process.
func writeSynced(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readEntries reads the index entries in dir, oldest first; a missing
// directory holds none.
func readEntries(dir string) ([]Entry, error) {
	files, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []Entry
	for _, f := range files {
		if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") || strings.HasPrefix(f.Name(), ".") {
			continue // a temporary file of an unfinished write
		}
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return nil, err
		}
		var e Entry
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("archive index entry %s: %w", filepath.Join(dir, f.Name()), err)
		}
		entries = append(entries, e)
	}
	SortOldestFirst(entries)
	return entries, nil
}

// SortOldestFirst orders entries as the promotions ran: by creation
// revision; entries without one (promotions from before it was recorded)
// come first, by finish time; the name breaks what ties remain. It is the
// order of an environment's status.history, oldest first.
func SortOldestFirst(entries []Entry) {
	slices.SortFunc(entries, func(a, b Entry) int { return Compare(a.order(), b.order()) })
}

// Order is a promotion's place among its environment's promotions.
type Order struct {
	// Revision is the creation revision, 0 when none was recorded.
	Revision uint64
	// At orders promotions without a revision among themselves.
	At metav1.Time
	// Name breaks ties.
	Name string
}

// Compare is negative when a ran before b.
func Compare(a, b Order) int {
	if (a.Revision == 0) != (b.Revision == 0) {
		if a.Revision == 0 {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.Revision, b.Revision), a.At.Compare(b.At.Time), strings.Compare(a.Name, b.Name))
}

// OrderOf is the order of a promotion with this creation revision, finish
// time and name.
func OrderOf(creationRevision string, finishedAt *metav1.Time, name string) Order {
	o := Order{Name: name}
	if n, err := strconv.ParseUint(creationRevision, 10, 63); err == nil {
		o.Revision = n
	}
	if finishedAt != nil {
		o.At = *finishedAt
	}
	return o
}

func (e Entry) order() Order { return OrderOf(e.CreationRevision, e.FinishedAt, e.Name) }
