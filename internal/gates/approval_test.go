package gates

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// The promotion the approvals of these tests approve, and its release.
const (
	promoUID    = types.UID("0b7c6b8e-5f1e-4a53-9a51-3c1b2f0e9d11")
	shopRelease = "shop-2.3.1"
)

func shop() *v1alpha1.Release {
	return &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: shopRelease}, Spec: v1alpha1.ReleaseSpec{Components: []v1alpha1.ReleaseComponent{
		{Name: "api", Image: v1alpha1.ImageDigestRef("reg.example/shop/api@" + apiDigest)},
		{Name: "worker", Image: v1alpha1.ImageDigestRef("reg.example/shop/worker@" + workerDigest)},
	}}}
}

func promo1(requester string) *v1alpha1.Promotion {
	return &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Name: "promo-1", UID: promoUID},
		Spec:       v1alpha1.PromotionSpec{Release: shopRelease, Environment: "prod", RequestedBy: requester},
	}
}

// approval builds an Approval of promotion "promo-1", bound to it and to
// the images of shop(); n orders creation.
func approval(n int, who string, decision v1alpha1.ApprovalDecision, groups ...string) v1alpha1.Approval {
	var images []v1alpha1.ComponentDigest
	for _, c := range shop().Spec.Components {
		images = append(images, v1alpha1.ComponentDigest{Name: c.Name, Image: c.Image})
	}
	return v1alpha1.Approval{
		ObjectMeta: metav1.ObjectMeta{
			Name:              fmt.Sprintf("a%d-%s", n, who),
			CreationTimestamp: metav1.NewTime(ts("2024-06-03T10:00:00Z").Add(timeMinutes(n))),
		},
		Spec: v1alpha1.ApprovalSpec{Promotion: "promo-1", Decision: decision, Approver: who, ApproverGroups: groups,
			PromotionUID: promoUID, Release: shopRelease, Components: images},
	}
}

const (
	approve = v1alpha1.ApprovalApprove
	reject  = v1alpha1.ApprovalReject
)

func TestApproval(t *testing.T) {
	promo := promo1("alice")
	two := v1alpha1.ApprovalGate{Count: 2}
	otherPromo := approval(2, "bob", approve)
	otherPromo.Spec.Promotion = "promo-2"

	tests := []struct {
		name      string
		gate      v1alpha1.ApprovalGate
		approvals []v1alpha1.Approval
		want      want
		// verdicts maps approval name to its ignore reason ("" = counted).
		verdicts map[string]string
	}{
		{
			name: "no approvals yet", gate: two,
			want: want{result: v1alpha1.GatePending, codes: codes(ReasonApprovalInsufficient)},
		},
		{
			name: "the requester's approval is ignored", gate: two,
			approvals: []v1alpha1.Approval{approval(1, "alice", approve), approval(2, "bob", approve)},
			want:      want{result: v1alpha1.GatePending, codes: codes(ReasonApprovalInsufficient, ReasonApprovalRequesterCannotApprove)},
			verdicts:  map[string]string{"a1-alice": ReasonApprovalRequesterCannotApprove, "a2-bob": ""},
		},
		{
			name: "a second distinct approver passes", gate: two,
			approvals: []v1alpha1.Approval{approval(1, "alice", approve), approval(2, "bob", approve), approval(3, "carol", approve)},
			want:      want{result: v1alpha1.GatePass},
			verdicts:  map[string]string{"a1-alice": ReasonApprovalRequesterCannotApprove, "a2-bob": "", "a3-carol": ""},
		},
		{
			name: "duplicate approvals from one person count once", gate: two,
			approvals: []v1alpha1.Approval{approval(2, "bob", approve), approval(1, "bob", approve)},
			want:      want{result: v1alpha1.GatePending, codes: codes(ReasonApprovalDuplicate, ReasonApprovalInsufficient)},
			// the older one (a1) counts, whatever the input order
			verdicts: map[string]string{"a1-bob": "", "a2-bob": ReasonApprovalDuplicate},
		},
		{
			name: "a reject by an allowed approver wins over enough approvals", gate: two,
			approvals: []v1alpha1.Approval{approval(1, "bob", approve), approval(2, "carol", approve), approval(3, "dave", reject)},
			want:      want{result: v1alpha1.GateFail, codes: codes(ReasonApprovalRejected)},
			verdicts:  map[string]string{"a1-bob": "", "a2-carol": "", "a3-dave": ""},
		},
		{
			name:      "a reject by someone not allowed is ignored",
			gate:      v1alpha1.ApprovalGate{Count: 1, Users: []string{"bob"}},
			approvals: []v1alpha1.Approval{approval(1, "eve", reject), approval(2, "bob", approve)},
			want:      want{result: v1alpha1.GatePass},
			verdicts:  map[string]string{"a1-eve": ReasonApprovalNotAllowed, "a2-bob": ""},
		},
		{
			name:      "group membership allows approving",
			gate:      v1alpha1.ApprovalGate{Count: 1, Groups: []string{"release-managers"}},
			approvals: []v1alpha1.Approval{approval(1, "bob", approve, "devs", "release-managers")},
			want:      want{result: v1alpha1.GatePass},
			verdicts:  map[string]string{"a1-bob": ""},
		},
		{
			name:      "another group does not",
			gate:      v1alpha1.ApprovalGate{Count: 1, Users: []string{"zoe"}, Groups: []string{"release-managers"}},
			approvals: []v1alpha1.Approval{approval(1, "carol", approve, "devs")},
			want:      want{result: v1alpha1.GatePending, codes: codes(ReasonApprovalInsufficient, ReasonApprovalNotAllowed)},
			verdicts:  map[string]string{"a1-carol": ReasonApprovalNotAllowed},
		},
		{
			name:      "without separation of duties the requester may approve",
			gate:      v1alpha1.ApprovalGate{Count: 1, SeparationOfDuties: ptr(false)},
			approvals: []v1alpha1.Approval{approval(1, "alice", approve)},
			want:      want{result: v1alpha1.GatePass},
			verdicts:  map[string]string{"a1-alice": ""},
		},
		{
			name: "the requester may reject their own promotion", gate: two,
			approvals: []v1alpha1.Approval{approval(1, "alice", reject)},
			want:      want{result: v1alpha1.GateFail, codes: codes(ReasonApprovalRejected)},
			verdicts:  map[string]string{"a1-alice": ""},
		},
		{
			name:      "approvals of another promotion and without approver are ignored",
			gate:      v1alpha1.ApprovalGate{}, // count 0 means 1
			approvals: []v1alpha1.Approval{otherPromo, approval(3, "", approve)},
			want:      want{result: v1alpha1.GatePending, codes: codes(ReasonApprovalApproverUnknown, ReasonApprovalInsufficient, ReasonApprovalOtherPromotion)},
			verdicts:  map[string]string{"a2-bob": ReasonApprovalOtherPromotion, "a3-": ReasonApprovalApproverUnknown},
		},
		{
			name: "count is invalid", gate: v1alpha1.ApprovalGate{Count: 21},
			want: want{result: v1alpha1.GateFail, codes: codes(ReasonInvalid)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Approval: &tt.gate}}
			got := Evaluate(gate, Inputs{Now: ts("2024-06-03T12:00:00Z"), Promotion: promo, Release: shop(), Approvals: tt.approvals})
			check(t, got, tt.want)
			if len(got.Approvals) != len(tt.verdicts) {
				t.Fatalf("got %d verdicts %+v, want %d", len(got.Approvals), got.Approvals, len(tt.verdicts))
			}
			for _, v := range got.Approvals {
				reason, ok := tt.verdicts[v.Name]
				if !ok {
					t.Errorf("unexpected verdict for %s", v.Name)
					continue
				}
				if v.Counted != (reason == "") || v.Reason != reason {
					t.Errorf("%s: counted=%v reason=%q, want counted=%v reason=%q", v.Name, v.Counted, v.Reason, reason == "", reason)
				}
			}
		})
	}
}

func TestApprovalMessages(t *testing.T) {
	promo := promo1("alice")
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 2, Groups: []string{"release-managers"}}}}

	got := Evaluate(gate, Inputs{Now: ts("2024-06-03T12:00:00Z"), Promotion: promo, Release: shop(),
		Approvals: []v1alpha1.Approval{approval(1, "alice", approve, "release-managers"), approval(2, "bob", approve, "release-managers")}})
	const pendingMsg = "1 of 2 approvals (bob); members of release-managers may approve; the requester alice may not; ignored: a1-alice by alice (approval.requester-cannot-approve)"
	if got.Message != pendingMsg {
		t.Errorf("message = %q\nwant      %q", got.Message, pendingMsg)
	}

	rejected := approval(3, "carol", reject, "release-managers")
	rejected.Spec.Comment = "breaks checkout"
	got = Evaluate(gate, Inputs{Now: ts("2024-06-03T12:00:00Z"), Promotion: promo, Release: shop(), Approvals: []v1alpha1.Approval{rejected}})
	if want := `rejected by carol: "breaks checkout"`; got.Message != want {
		t.Errorf("message = %q, want %q", got.Message, want)
	}
}

// An approval counts for the promotion it was made for, and for no other
// that has, or later takes, its name: the attack where a promotion is
// approved, deleted and created again for another release.
func TestApprovalCountsOnlyForThePromotionItIsBoundTo(t *testing.T) {
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 1}}}
	other := shop()
	other.Name = "shop-6.6.6"
	other.Spec.Components[0].Image = v1alpha1.ImageDigestRef("reg.example/shop/api@sha256:" + strings.Repeat("e", 64))
	replacedRelease := shop()
	replacedRelease.Spec.Components[1].Image = other.Spec.Components[0].Image
	reordered := approval(1, "bob", approve)
	slices.Reverse(reordered.Spec.Components)
	// recreated is promotion promo-1 deleted and created again.
	recreated := func(uid types.UID, release string) *v1alpha1.Promotion {
		p := promo1("alice")
		p.UID, p.Spec.Release = uid, release
		return p
	}

	for _, tc := range []struct {
		name    string
		promo   *v1alpha1.Promotion
		release *v1alpha1.Release
		change  func(*v1alpha1.ApprovalSpec)
		want    string // "" counted, or the ignore reason
	}{
		{name: "bound to this promotion and its images", want: ""},
		{name: "the images listed in another order", change: func(a *v1alpha1.ApprovalSpec) { *a = reordered.Spec }, want: ""},
		{name: "made for no promotion in particular", want: ReasonApprovalUnbound,
			change: func(a *v1alpha1.ApprovalSpec) { a.PromotionUID, a.Release, a.Components = "", "", nil }},
		{name: "the promotion was deleted and created again for another release", want: ReasonApprovalPromotionReplaced,
			promo: recreated("5d1f0c3a-0000-4000-8000-000000000002", other.Name), release: other},
		{name: "the promotion was created again for the same release", want: ReasonApprovalPromotionReplaced,
			promo: recreated("5d1f0c3a-0000-4000-8000-000000000003", shopRelease)},
		{name: "the release was replaced under its name with other images", want: ReasonApprovalReleaseChanged, release: replacedRelease},
		{name: "a component added since", want: ReasonApprovalReleaseChanged,
			change: func(a *v1alpha1.ApprovalSpec) { a.Components = a.Components[:1] }},
		{name: "bound to another release name", want: ReasonApprovalReleaseChanged,
			change: func(a *v1alpha1.ApprovalSpec) { a.Release = other.Name }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			promo, release := cmp.Or(tc.promo, promo1("alice")), cmp.Or(tc.release, shop())
			a := approval(1, "bob", approve)
			if tc.change != nil {
				tc.change(&a.Spec)
			}
			got := Evaluate(gate, Inputs{Now: ts("2024-06-03T12:00:00Z"), Promotion: promo, Release: release, Approvals: []v1alpha1.Approval{a}})
			if len(got.Approvals) != 1 || got.Approvals[0].Counted != (tc.want == "") || got.Approvals[0].Reason != tc.want {
				t.Fatalf("verdicts %+v, want reason %q", got.Approvals, tc.want)
			}
			if tc.want == "" {
				check(t, got, want{result: v1alpha1.GatePass})
				return
			}
			check(t, got, want{result: v1alpha1.GatePending, codes: sortedCodes([]string{ReasonApprovalInsufficient, tc.want})})
			if !strings.Contains(got.Message, "a1-bob by bob ("+tc.want+")") {
				t.Errorf("message %q does not say why the approval was ignored", got.Message)
			}
		})
	}
}

func TestApprovalNeedsTheRelease(t *testing.T) {
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 1}}}
	got := Evaluate(gate, Inputs{Now: ts("2024-06-03T12:00:00Z"), Promotion: promo1("alice"), Approvals: []v1alpha1.Approval{approval(1, "bob", approve)}})
	check(t, got, want{result: v1alpha1.GateFail, codes: codes(ReasonInputMissing)})
}
