package gates

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// An approval gate needs spec.count distinct people to approve. Identities come
// from Approval.spec.approver and approverGroups, which the server sets from
// the authenticated user at admission, so they can be trusted here; matching is
// exact and case-sensitive, as Kubernetes user and group names are.
//
// The rules, in the order they are applied to each Approval (oldest first, by
// creation time then name, so "the first one counts" is deterministic):
//  1. an Approval of another promotion is ignored (approval.other-promotion);
//  2. one not bound to this very promotion is ignored (see ApprovalBinding):
//     without spec.promotionUID (approval.unbound), bound to another UID,
//     that is an earlier promotion of the same name (approval.promotion-
//     replaced), or to other release images than the promotion's release
//     pins now (approval.release-changed). A name alone never carries an
//     approval over to whatever promotion has that name later;
//  3. one without an approver is ignored (approval.approver-unknown);
//  4. when users or groups are set, an approver in neither is ignored
//     (approval.not-allowed); when both are empty anyone may approve, because
//     the RBAC role that may create Approvals already limits who can;
//  5. with separation of duties (the default), an approve by the promotion's
//     spec.requestedBy is ignored (approval.requester-cannot-approve). A reject
//     by the requester counts: withdrawing one's own promotion is always fine;
//  6. each approver counts once per decision; later duplicates are ignored
//     (approval.duplicate).
//
// Any counted reject fails the gate (approval.rejected), however many
// approvals there are: one allowed "no" stops a promotion. Otherwise the gate
// passes with count distinct approvers and is Pending (approval.insufficient)
// until then; it has no RetryAt because only a new Approval can change it.
//
// The Approval reconciler writes status.counted and status.reason from the
// verdicts. When several approval gates apply to one promotion, an Approval
// counts if any gate counted it.

// ApprovalVerdict says whether one Approval counted for an approval gate.
type ApprovalVerdict struct {
	// Name of the Approval object.
	Name string
	// Approver who made it.
	Approver string
	// Decision: approve or reject.
	Decision v1alpha1.ApprovalDecision
	// Counted is true when the gate took the approval into account.
	Counted bool
	// Reason is the approval.* code saying why it was ignored; empty when
	// counted.
	Reason string
}

// ApprovalBinding is the reason code saying why approval spec a is not bound
// to promo as it is now, whose spec.release is rel, or "" when it is: the
// Promotion's UID, its release and that release's images (name and digest,
// whatever their order) are those the approval recorded when it was made.
func ApprovalBinding(a *v1alpha1.ApprovalSpec, promo *v1alpha1.Promotion, rel *v1alpha1.Release) string {
	switch {
	case a.PromotionUID == "":
		return ReasonApprovalUnbound
	case a.PromotionUID != promo.UID:
		return ReasonApprovalPromotionReplaced
	case a.Release != promo.Spec.Release || rel.Name != promo.Spec.Release || !sameImages(a.Components, rel.Spec.Components):
		return ReasonApprovalReleaseChanged
	}
	return ""
}

// sameImages reports whether bound pins exactly the images of components.
func sameImages(bound []v1alpha1.ComponentDigest, components []v1alpha1.ReleaseComponent) bool {
	if len(bound) != len(components) {
		return false
	}
	images := make(map[string]v1alpha1.ImageDigestRef, len(components))
	for _, c := range components {
		images[c.Name] = c.Image
	}
	for _, b := range bound {
		image, ok := images[b.Name]
		if !ok || image != b.Image {
			return false
		}
		delete(images, b.Name)
	}
	return len(images) == 0
}

// EvaluateApproval counts the approvals in in.Approvals for in.Promotion.
func EvaluateApproval(g *v1alpha1.ApprovalGate, in Inputs) Outcome {
	if errs := validateApproval(g, field.NewPath("spec", TypeApproval)); len(errs) > 0 {
		return invalid(TypeApproval, errs)
	}
	if in.Promotion == nil {
		return fail(TypeApproval, "no promotion given", ReasonInputMissing)
	}
	if in.Release == nil {
		return fail(TypeApproval, "no release given: approvals are bound to its images", ReasonInputMissing)
	}
	need := int(max(g.Count, 1))
	sod := g.SeparationOfDuties == nil || *g.SeparationOfDuties
	requester := in.Promotion.Spec.RequestedBy

	ordered := make([]*v1alpha1.Approval, len(in.Approvals))
	for i := range in.Approvals {
		ordered[i] = &in.Approvals[i]
	}
	slices.SortStableFunc(ordered, func(a, b *v1alpha1.Approval) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})

	type key struct {
		who      string
		decision v1alpha1.ApprovalDecision
	}
	seen := map[key]bool{}
	var approvers, rejecters []string
	var firstReject *v1alpha1.Approval
	var ignored []string
	verdicts := make([]ApprovalVerdict, 0, len(ordered))
	for _, a := range ordered {
		v := ApprovalVerdict{Name: a.Name, Approver: a.Spec.Approver, Decision: a.Spec.Decision}
		k := key{a.Spec.Approver, a.Spec.Decision}
		binding := ApprovalBinding(&a.Spec, in.Promotion, in.Release)
		switch {
		case in.Promotion.Name != "" && a.Spec.Promotion != in.Promotion.Name:
			v.Reason = ReasonApprovalOtherPromotion
		case binding != "":
			v.Reason = binding
		case a.Spec.Approver == "":
			v.Reason = ReasonApprovalApproverUnknown
		case a.Spec.Decision != v1alpha1.ApprovalApprove && a.Spec.Decision != v1alpha1.ApprovalReject:
			v.Reason = ReasonApprovalDecisionUnknown
		case !approverAllowed(g, a):
			v.Reason = ReasonApprovalNotAllowed
		case sod && a.Spec.Decision == v1alpha1.ApprovalApprove && a.Spec.Approver == requester:
			v.Reason = ReasonApprovalRequesterCannotApprove
		case seen[k]:
			v.Reason = ReasonApprovalDuplicate
		default:
			seen[k] = true
			v.Counted = true
			if a.Spec.Decision == v1alpha1.ApprovalReject {
				rejecters = append(rejecters, a.Spec.Approver)
				if firstReject == nil {
					firstReject = a
				}
			} else {
				approvers = append(approvers, a.Spec.Approver)
			}
		}
		if !v.Counted {
			ignored = append(ignored, fmt.Sprintf("%s by %s (%s)", a.Name, displayName(a.Spec.Approver), v.Reason))
		}
		verdicts = append(verdicts, v)
	}

	var out Outcome
	switch {
	case len(rejecters) > 0:
		msg := "rejected by " + strings.Join(rejecters, ", ")
		if c := firstReject.Spec.Comment; c != "" {
			msg += fmt.Sprintf(": %q", Truncate(c, 200))
		}
		out = fail(TypeApproval, msg, ReasonApprovalRejected)
	case len(approvers) >= need:
		out = pass(TypeApproval, fmt.Sprintf("approved by %s (%d of %d)", strings.Join(approvers, ", "), len(approvers), need))
	default:
		msg := fmt.Sprintf("%d of %d approvals", len(approvers), need)
		if len(approvers) > 0 {
			msg += " (" + strings.Join(approvers, ", ") + ")"
		}
		if who := allowedApprovers(g); who != "" {
			msg += "; " + who + " may approve"
		}
		if sod && requester != "" {
			msg += "; the requester " + requester + " may not"
		}
		out = pending(TypeApproval, msg, nil, ReasonApprovalInsufficient)
	}
	if out.Result != v1alpha1.GatePass && len(ignored) > 0 {
		out.Message += "; ignored: " + strings.Join(ignored, ", ")
		codes := slices.Clone(out.ReasonCodes)
		for _, v := range verdicts {
			if v.Reason != "" {
				codes = append(codes, v.Reason)
			}
		}
		out.ReasonCodes = sortedCodes(codes)
	}
	out.Approvals = verdicts
	return out
}

func validateApproval(g *v1alpha1.ApprovalGate, path *field.Path) field.ErrorList {
	if g == nil {
		return field.ErrorList{field.Required(path, "set the approval gate")}
	}
	var errs field.ErrorList
	if g.Count < 0 || g.Count > 20 {
		errs = append(errs, field.Invalid(path.Child("count"), g.Count, "must be between 1 and 20 (0 means 1)"))
	}
	for i, u := range g.Users {
		if u == "" {
			errs = append(errs, field.Invalid(path.Child("users").Index(i), u, "must not be empty"))
		}
	}
	for i, grp := range g.Groups {
		if grp == "" {
			errs = append(errs, field.Invalid(path.Child("groups").Index(i), grp, "must not be empty"))
		}
	}
	return errs
}

// approverAllowed applies users and groups; both empty allows anyone.
func approverAllowed(g *v1alpha1.ApprovalGate, a *v1alpha1.Approval) bool {
	if len(g.Users) == 0 && len(g.Groups) == 0 {
		return true
	}
	if slices.Contains(g.Users, a.Spec.Approver) {
		return true
	}
	for _, grp := range a.Spec.ApproverGroups {
		if slices.Contains(g.Groups, grp) {
			return true
		}
	}
	return false
}

// allowedApprovers describes who may approve, or "" when anyone may.
func allowedApprovers(g *v1alpha1.ApprovalGate) string {
	var parts []string
	if len(g.Users) > 0 {
		parts = append(parts, "users "+strings.Join(sortedCodes(g.Users), ", "))
	}
	if len(g.Groups) > 0 {
		parts = append(parts, "members of "+strings.Join(sortedCodes(g.Groups), ", "))
	}
	return strings.Join(parts, " or ")
}

func displayName(who string) string {
	if who == "" {
		return "nobody"
	}
	return who
}
