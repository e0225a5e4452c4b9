package e2e

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// bindRole grants ClusterRole stella-<role> to user in ns.
func bindRole(ctx context.Context, c client.Client, ns, role, user string) {
	GinkgoHelper()
	Expect(c.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: role + "-" + user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "stella-" + role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
}

var _ = Describe("roles", func() {
	var (
		admin   client.Client
		ns, alt string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
		alt = newNamespace(ctx, admin)
		for _, role := range []string{"viewer", "releaser", "approver", "admin", "agent"} {
			bindRole(ctx, admin, ns, role, role+"-user")
		}
		Expect(admin.Create(ctx, release(ns, "existing", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, release(alt, "elsewhere", "1.0.0"))).To(Succeed())
		// The server refuses a promotion into an environment that does not exist.
		Expect(admin.Create(ctx, environment(ns, "dev"))).To(Succeed())
		// An approval is bound to a promotion that exists.
		Expect(admin.Create(ctx, promotion(ns, "p", "existing", "dev"))).To(Succeed())
	})

	type action struct {
		what string
		do   func(ctx context.Context, c client.Client, ns string) error
	}
	var (
		listReleases = action{"list releases", func(ctx context.Context, c client.Client, ns string) error {
			return c.List(ctx, &v1alpha1.ReleaseList{}, client.InNamespace(ns))
		}}
		createRelease = action{"create a release", func(ctx context.Context, c client.Client, ns string) error {
			return c.Create(ctx, generated(release(ns, "", "2.0.0")))
		}}
		createPromo = action{"create a promotion", func(ctx context.Context, c client.Client, ns string) error {
			return c.Create(ctx, generated(promotion(ns, "", "existing", "dev")))
		}}
		createGate = action{"create a gate", func(ctx context.Context, c client.Client, ns string) error {
			return c.Create(ctx, generated(approvalGate(ns, "")))
		}}
		createApproval = action{"create an approval", func(ctx context.Context, c client.Client, ns string) error {
			return c.Create(ctx, &v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "a-"},
				Spec: v1alpha1.ApprovalSpec{Promotion: "p", Decision: v1alpha1.ApprovalApprove}})
		}}
		patchStatus = action{"patch a release's status", func(ctx context.Context, c client.Client, ns string) error {
			rel := &v1alpha1.Release{}
			if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "existing"}, rel); err != nil {
				return err
			}
			before := rel.DeepCopy()
			rel.Status.Deployments = []v1alpha1.ReleaseDeployment{{Environment: "forged"}}
			return c.Status().Patch(ctx, rel, client.MergeFrom(before))
		}}
		createSecret = action{"create a secret", func(ctx context.Context, c client.Client, ns string) error {
			return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "s-"}})
		}}
		listTasks = action{"list deploy tasks", func(ctx context.Context, c client.Client, ns string) error {
			return c.List(ctx, &v1alpha1.DeployTaskList{}, client.InNamespace(ns))
		}}
		createLease = action{"create a lease", func(ctx context.Context, c client.Client, ns string) error {
			return c.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "l-"}})
		}}
	)

	DescribeTable("each role can do what it should and no more",
		func(ctx SpecContext, role string, allowed, denied []action) {
			c := shared.UserClient(role + "-user")
			for _, a := range allowed {
				Expect(a.do(ctx, c, ns)).To(Succeed(), "%s should be allowed to %s", role, a.what)
			}
			for _, a := range denied {
				err := a.do(ctx, c, ns)
				Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s must not be allowed to %s; got %v", role, a.what, err)
			}
			for _, a := range []action{listReleases, createRelease} {
				err := a.do(ctx, c, alt)
				Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s must not be allowed to %s in another namespace; got %v", role, a.what, err)
			}
		},
		Entry("viewer", "viewer", []action{listReleases, listTasks},
			[]action{createRelease, createPromo, createGate, createApproval, patchStatus, createSecret}),
		Entry("releaser", "releaser", []action{listReleases, createRelease, createPromo},
			[]action{createGate, createApproval, patchStatus, createSecret}),
		Entry("approver", "approver", []action{listReleases, createApproval},
			[]action{createRelease, createPromo, createGate, patchStatus}),
		Entry("admin", "admin", []action{listReleases, createRelease, createGate, createApproval, createSecret, patchStatus},
			nil),
		Entry("agent", "agent", []action{listTasks, createLease},
			[]action{createRelease, createPromo, createGate, createApproval, createSecret}),
	)

	It("takes who requested a promotion and who approved it from the credential, and refuses forgeries", func(ctx SpecContext) {
		releaser := shared.UserClient("releaser-user")
		forged := promotion(ns, "forged", "existing", "dev")
		forged.Spec.RequestedBy = "someone-else"
		err := releaser.Create(ctx, forged)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("spec.requestedBy"), ContainSubstring(`your own user name "releaser-user"`)))

		honest := promotion(ns, "honest", "existing", "dev")
		Expect(releaser.Create(ctx, honest)).To(Succeed())
		Expect(honest.Spec.RequestedBy).To(Equal("releaser-user"))

		approver := shared.UserClient("approver-user", "release-managers")
		forgedApproval := &v1alpha1.Approval{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "forged"},
			Spec: v1alpha1.ApprovalSpec{Promotion: "honest", Decision: v1alpha1.ApprovalApprove,
				Approver: "approver-user", ApproverGroups: []string{"release-managers", "system:masters"}},
		}
		err = approver.Create(ctx, forgedApproval)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.approverGroups"))

		appr := &v1alpha1.Approval{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lgtm"},
			Spec:       v1alpha1.ApprovalSpec{Promotion: "honest", Decision: v1alpha1.ApprovalApprove},
		}
		Expect(approver.Create(ctx, appr)).To(Succeed())
		Expect(appr.Spec.Approver).To(Equal("approver-user"))
		Expect(appr.Spec.ApproverGroups).To(ConsistOf("release-managers", "system:authenticated"))

		// The stamped identity cannot be changed afterwards, even by an admin.
		stamped := appr.DeepCopy()
		appr.Spec.Approver = "the-cto"
		err = admin.Patch(ctx, appr, client.MergeFrom(stamped))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), fmt.Sprintf("got %v", err))
	})
})
