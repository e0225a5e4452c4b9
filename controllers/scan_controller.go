package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/gates"
	"github.com/stella-ops/stella/internal/scan"
)

// scannedByStella is v1alpha1.LabelScannedBy's value on the scanner's
// reports.
const scannedByStella = "stella"

// maxFindings is how many findings a ScanReport's status lists; the full
// report is in the evidence store.
const maxFindings = 1000

// activePollEvery is how often the scanner looks for a snapshot that
// another process made active.
const activePollEvery = 10 * time.Second

// scanRetryAfter is when a scan that failed (a registry that does not
// answer, an image that is not there) is tried again.
const scanRetryAfter = 2 * time.Minute

// ReleaseScanReconciler keeps a ScanReport for each image digest of each
// Release, owned by the releases that use the image.
type ReleaseScanReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler; a report deleted by hand is
// made again for the releases that pin its image.
func (r *ReleaseScanReconciler) SetupWithManager(mgr ctrl.Manager) error {
	deleted := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("release-scan").
		For(&v1alpha1.Release{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ScanReport{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return releasesPinning(ctx, r.Client, o)
		}), builder.WithPredicates(deleted)).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=releases;scanreports,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=scanreports,verbs=create;patch

// Reconcile creates the release's missing ScanReports and adds the release
// to the owners of those it shares with other releases.
func (r *ReleaseScanReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rel := &v1alpha1.Release{}
	if err := r.Get(ctx, req.NamespacedName, rel); err != nil || !rel.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var errs []error
	for _, c := range rel.Spec.Components {
		errs = append(errs, r.ensureReport(ctx, rel, c.Image))
	}
	return ctrl.Result{}, errors.Join(errs...)
}

func (r *ReleaseScanReconciler) ensureReport(ctx context.Context, rel *v1alpha1.Release, image v1alpha1.ImageDigestRef) error {
	report := &v1alpha1.ScanReport{ObjectMeta: metav1.ObjectMeta{Namespace: rel.Namespace, Name: v1alpha1.ScanReportName(image.Digest())}}
	err := r.Get(ctx, client.ObjectKeyFromObject(report), report)
	switch {
	case apierrors.IsNotFound(err):
		report.Labels = map[string]string{v1alpha1.LabelScannedBy: scannedByStella}
		report.Spec.Image = image
		if err := controllerutil.SetOwnerReference(rel, report, r.Scheme()); err != nil {
			return err
		}
		return client.IgnoreAlreadyExists(r.Create(ctx, report))
	case err != nil:
		return err
	case report.Labels[v1alpha1.LabelScannedBy] != scannedByStella:
		return nil // another scanner's report
	}
	if slices.ContainsFunc(report.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == rel.UID }) {
		return nil
	}
	before := report.DeepCopy()
	if err := controllerutil.SetOwnerReference(rel, report, r.Scheme()); err != nil {
		return err
	}
	return r.Patch(ctx, report, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// ScanReportReconciler fills the ScanReports the scanner keeps: the
// packages of the image, matched against the active advisory snapshot (or
// the one the spec pins), with the namespace's accepted VEX statements
// applied. A new snapshot or a VEX change re-matches every report from the
// cached package lists, without reading an image again.
type ScanReportReconciler struct {
	client.Client
	Scanner *scan.Scanner
	// Blobs keeps the full reports and the SBOMs; nil keeps none.
	Blobs    evidence.BlobStore
	Recorder record.EventRecorder
	// RescanEvery re-matches each report at least this often, so that it
	// stays younger than the securityVerdict gates' maxReportAge.
	RescanEvery time.Duration
	// Parallel is how many reports are scanned at once.
	Parallel int
}

// SetupWithManager registers the reconciler, woken by the reports it keeps,
// by VEX statements of their namespace and by new advisory snapshots.
func (r *ScanReportReconciler) SetupWithManager(mgr ctrl.Manager) error {
	activations := make(chan event.GenericEvent)
	notices := r.Scanner.Activations()
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		// A snapshot imported by this process is noticed at once; one
		// imported into the directory by another (stella advisories
		// import) at the next look.
		look := time.NewTicker(activePollEvery)
		defer look.Stop()
		seen, _ := r.Scanner.Advisories.ActiveDigest()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-notices:
			case <-look.C:
			}
			active, _ := r.Scanner.Advisories.ActiveDigest()
			if active == seen {
				continue
			}
			seen = active
			select {
			case activations <- event.GenericEvent{Object: &v1alpha1.ScanReport{}}:
			case <-ctx.Done():
				return nil
			}
		}
	})); err != nil {
		return err
	}
	managed := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[v1alpha1.LabelScannedBy] == scannedByStella })
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ScanReport{}, builder.WithPredicates(managed, predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.VEXStatement{}, handler.EnqueueRequestsFromMapFunc(r.reportsIn)).
		WatchesRawSource(source.Channel(activations, handler.EnqueueRequestsFromMapFunc(r.reportsIn))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Parallel)}).
		Complete(r)
}

// reportsIn lists the reports the scanner keeps in the object's namespace,
// or in all namespaces for a new snapshot.
func (r *ScanReportReconciler) reportsIn(ctx context.Context, o client.Object) []reconcile.Request {
	var reports v1alpha1.ScanReportList
	opts := []client.ListOption{client.MatchingLabels{v1alpha1.LabelScannedBy: scannedByStella}}
	if o.GetNamespace() != "" {
		opts = append(opts, client.InNamespace(o.GetNamespace()))
	}
	if err := r.List(ctx, &reports, opts...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list the ScanReports to match again")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(reports.Items))
	for _, rep := range reports.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rep.Namespace, Name: rep.Name}})
	}
	return reqs
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=scanreports;vexstatements,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=scanreports/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile scans the report's image and patches the status once.
func (r *ScanReportReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	report := &v1alpha1.ScanReport{}
	if err := r.Get(ctx, req.NamespacedName, report); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if report.Labels[v1alpha1.LabelScannedBy] != scannedByStella || !report.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := report.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, report))
	}()
	inv, err := r.inventory(ctx, report)
	if err != nil {
		message := gates.Truncate(err.Error(), 1024)
		if c := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ConditionReconciling); c == nil || c.Reason != v1alpha1.ReasonScanFailed || c.Message != message {
			r.Recorder.Event(report, corev1.EventTypeWarning, v1alpha1.ReasonScanFailed, message)
		}
		markReconciling(&report.Status.Conditions, report.Generation, v1alpha1.ReasonScanFailed, message)
		return ctrl.Result{RequeueAfter: scanRetryAfter}, nil
	}
	report.Status.Packages = int32(len(inv.Packages))
	if err := r.storeSBOM(report, inv); err != nil {
		return ctrl.Result{}, err
	}
	snap, err := r.snapshot(report)
	if errors.Is(err, scan.ErrNoSnapshot) {
		markReconciling(&report.Status.Conditions, report.Generation, v1alpha1.ReasonNoAdvisories,
			fmt.Sprintf("found %d packages; %v", len(inv.Packages), err))
		return ctrl.Result{}, nil // a new snapshot wakes every report
	}
	if err != nil {
		markStalled(&report.Status.Conditions, report.Generation, v1alpha1.ReasonDependencyNotFound, "spec.advisorySnapshot: "+err.Error())
		return ctrl.Result{}, nil
	}
	docs, err := r.acceptedVEX(ctx, report.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	result := scan.Evaluate(inv, snap, docs, r.Scanner.Trust())
	if err := r.record(report, result); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.RescanEvery}, nil
}

// inventory reads the image's packages, saying so in the status first when
// that means reading its layers (unless it is trying again after a failure,
// which the status says already).
func (r *ScanReportReconciler) inventory(ctx context.Context, report *v1alpha1.ScanReport) (*scan.Inventory, error) {
	if inv, ok := r.Scanner.Cataloguer.Cached(report.Spec.Image.Digest()); ok {
		return inv, nil // re-matching: no image is read
	}
	if failing := meta.FindStatusCondition(report.Status.Conditions, v1alpha1.ConditionReconciling); failing == nil || failing.Reason != v1alpha1.ReasonScanFailed {
		progress := report.DeepCopy()
		markReconciling(&progress.Status.Conditions, report.Generation, v1alpha1.ReasonScanning, "reading the layers of "+string(report.Spec.Image))
		if err := patchStatus(ctx, r.Client, report, progress); err != nil {
			return nil, err
		}
		report.Status = progress.Status
		report.ResourceVersion = progress.ResourceVersion
	}
	return r.Scanner.Inventory(ctx, string(report.Spec.Image))
}

func (r *ScanReportReconciler) snapshot(report *v1alpha1.ScanReport) (*scan.Snapshot, error) {
	if pinned := report.Spec.AdvisorySnapshot; pinned != "" {
		return r.Scanner.Advisories.Snapshot(string(pinned))
	}
	return r.Scanner.Advisories.Active()
}

// acceptedVEX reads the namespace's VEX statements that the VEX reconciler
// accepted for the document they hold now.
func (r *ScanReportReconciler) acceptedVEX(ctx context.Context, namespace string) ([]scan.VEXDocument, error) {
	var list v1alpha1.VEXStatementList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	var docs []scan.VEXDocument
	for _, s := range list.Items {
		if s.Status.ObservedGeneration != s.Generation || !meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionReady) {
			continue
		}
		doc, err := scan.ParseVEX([]byte(s.Spec.Document))
		if err != nil {
			continue // accepted for an earlier document; its reconciler says why now
		}
		issuer := s.Spec.Issuer
		if issuer == "" {
			issuer = doc.Author
		}
		docs = append(docs, scan.VEXDocument{Name: s.Name, Issuer: issuer, Doc: doc})
	}
	return docs, nil
}

// storeSBOM stores the image's SBOM once: it changes only with the image.
func (r *ScanReportReconciler) storeSBOM(report *v1alpha1.ScanReport, inv *scan.Inventory) error {
	if r.Blobs == nil || report.Status.SBOMDigest != "" && report.Status.ObservedGeneration == report.Generation {
		return nil
	}
	sbom, err := scan.SBOM(inv, string(report.Spec.Image))
	if err != nil {
		return err
	}
	d, err := r.Blobs.Put(sbom)
	if err != nil {
		return fmt.Errorf("store the SBOM: %w", err)
	}
	report.Status.SBOMDigest = d
	return nil
}

// record writes the report into the status, and the whole report into the
// evidence store. An Event says when the findings changed.
func (r *ScanReportReconciler) record(report *v1alpha1.ScanReport, result *scan.Report) error {
	st := &report.Status
	digest := result.Digest()
	if r.Blobs != nil {
		if _, err := r.Blobs.Put(result.Canonical()); err != nil {
			return fmt.Errorf("store the report: %w", err)
		}
	}
	changed := st.ReportDigest != digest
	st.ReportDigest = digest
	st.AdvisorySnapshot = v1alpha1.Digest(result.AdvisorySnapshot)
	st.Summary = result.Summary
	st.MaxSeverity = result.MaxSeverity
	st.Findings = result.Findings
	st.Truncated = len(result.Findings) > maxFindings
	if st.Truncated {
		st.Findings = result.Findings[:maxFindings]
	}
	st.ScannedAt = &metav1.Time{Time: time.Now().Truncate(time.Second)}
	st.ObservedGeneration = report.Generation
	message := fmt.Sprintf("%d packages, %d findings (%d suppressed by VEX), highest %s, against advisory snapshot %s",
		result.Packages, len(result.Findings), result.Summary.Suppressed, result.MaxSeverity, shortDigest(result.AdvisorySnapshot))
	if len(result.Problems) > 0 {
		message += fmt.Sprintf("; %d problem(s), first: %s", len(result.Problems), result.Problems[0])
	}
	markReady(&st.Conditions, report.Generation, gates.Truncate(message, 1024))
	if changed {
		r.Recorder.Event(report, corev1.EventTypeNormal, "Scanned", gates.Truncate(message, 1024))
	}
	return nil
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
