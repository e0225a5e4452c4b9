package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agent"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
	"github.com/stella-ops/stella/internal/scheme"
)

var _ = Describe("an agent's identity outlives nothing", func() {
	It("is refused once its Agent is deleted, created again or revoked, is signed for at most --cert-ttl, and its stale join tokens go away", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		identities := map[string]*agent.Identity{}
		clients := map[string]client.Client{}
		for _, name := range []string{"host-a", "host-d", "host-r"} {
			args := joinArgs(ctx, ns, name)
			// Asking for a year: the server grants its --cert-ttl (30 days).
			o := agent.JoinOptions{Server: args[1], CAHash: args[3], Token: args[5], CertTTL: 365 * 24 * time.Hour}
			dir := GinkgoT().TempDir()
			Expect(agent.Join(ctx, dir, ns, name, o)).To(Succeed())
			id, err := agent.LoadIdentity(dir, ns, name, o.CertTTL)
			Expect(err).NotTo(HaveOccurred())
			identities[name] = id
			cfg, err := id.RESTConfig()
			Expect(err).NotTo(HaveOccurred())
			clients[name], err = client.New(cfg, client.Options{Scheme: scheme.New()})
			Expect(err).NotTo(HaveOccurred())
			Expect(admin.Create(ctx, &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-" + name},
				Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: name},
			})).To(Succeed())
		}
		listTargets := func(name string) error {
			return clients[name].List(ctx, &v1alpha1.TargetList{}, client.InNamespace(ns), client.MatchingFields{v1alpha1.FieldTargetAgent: name})
		}
		refused := func(err error, reason string) {
			GinkgoHelper()
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
			Expect(err.Error()).To(ContainSubstring(reason))
		}

		By("signing the certificates asked for a year for the server's 30 days")
		for name, id := range identities {
			Expect(id.Expires()).To(BeTemporally("<=", time.Now().Add(30*24*time.Hour+time.Minute)), "certificate of %s", name)
			Expect(listTargets(name)).To(Succeed())
		}

		By("refusing host-d's certificate once its Agent is deleted")
		Expect(admin.Delete(ctx, &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-d"}})).To(Succeed())
		Eventually(listTargets).WithArguments("host-d").WithContext(ctx).WithTimeout(10*time.Second).
			Should(Satisfy(apierrors.IsForbidden), "the server's watch of the Agents sees the deletion")
		refused(listTargets("host-d"), "Agent "+ns+"/host-d does not exist")
		err := identities["host-d"].RenewNow(ctx)
		Expect(err).To(HaveOccurred(), "a deleted Agent's certificate is not renewed")
		Expect(err.Error()).To(ContainSubstring("does not exist"))

		By("refusing it still when an Agent of the same name is created again, and once its host joins again")
		args := joinArgs(ctx, ns, "host-d") // creates the Agent again
		Eventually(func() error { return listTargets("host-d") }).WithContext(ctx).WithTimeout(10 * time.Second).
			Should(MatchError(ContainSubstring("earlier join of Agent " + ns + "/host-d")))
		dir := GinkgoT().TempDir()
		Expect(agent.Join(ctx, dir, ns, "host-d", agent.JoinOptions{Server: args[1], CAHash: args[3], Token: args[5], CertTTL: time.Hour})).To(Succeed())
		rejoined, err := agent.LoadIdentity(dir, ns, "host-d", time.Hour)
		Expect(err).NotTo(HaveOccurred())
		cfg, err := rejoined.RESTConfig()
		Expect(err).NotTo(HaveOccurred())
		rejoinedClient, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			return rejoinedClient.List(ctx, &v1alpha1.TargetList{}, client.InNamespace(ns), client.MatchingFields{v1alpha1.FieldTargetAgent: "host-d"})
		}).WithContext(ctx).WithTimeout(10 * time.Second).Should(Succeed())
		refused(listTargets("host-d"), "earlier join of Agent "+ns+"/host-d")
		Expect(identities["host-d"].RenewNow(ctx)).To(MatchError(ContainSubstring("earlier join")))

		By("refusing host-r's certificate at once when stellactl revokes it, and deleting its unused join token")
		joinArgs(ctx, ns, "host-r") // a token never used
		out, err := stellactl(ctx, shared.Kubeconfig(), "agent", "revoke", "host-r", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("Deleted its unused join token"))
		Eventually(listTargets).WithArguments("host-r").WithContext(ctx).WithTimeout(10 * time.Second).Should(Satisfy(apierrors.IsForbidden))
		refused(listTargets("host-r"), "Agent "+ns+"/host-r is revoked")
		Expect(identities["host-r"].RenewNow(ctx)).To(MatchError(ContainSubstring("is revoked")))
		var tokens corev1.SecretList
		Expect(admin.List(ctx, &tokens, client.InNamespace("kube-system"),
			client.MatchingLabels{v1alpha1.LabelAgentNamespace: ns, v1alpha1.LabelAgent: "host-r"})).To(Succeed())
		Expect(tokens.Items).To(BeEmpty())

		By("saying so in the revoked Agent's and its Target's Ready condition")
		Eventually(func(g Gomega) {
			revoked := &v1alpha1.Agent{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "host-r"}, revoked)).To(Succeed())
			ready := meta.FindStatusCondition(revoked.Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonAgentRevoked))
			target := &v1alpha1.Target{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-host-r"}, target)).To(Succeed())
			g.Expect(meta.FindStatusCondition(target.Status.Conditions, v1alpha1.ConditionReady)).To(HaveField("Reason", v1alpha1.ReasonAgentRevoked))
		}).WithContext(ctx).WithTimeout(20 * time.Second).Should(Succeed())

		By("keeping a revocation: it cannot be undone, and no join token is made for a revoked Agent")
		err = admin.Patch(ctx, &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-r"}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":false}}`)))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.revoked cannot be set back to false"))
		out, err = stellactl(ctx, shared.Kubeconfig(), "agent", "join-token", "host-r", "-n", ns)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("agent " + ns + "/host-r is revoked: delete it first"))

		By("approving no renewal for host-d or host-r after they were cut off")
		var requests certificatesv1.CertificateSigningRequestList
		Expect(admin.List(ctx, &requests)).To(Succeed())
		for _, csr := range requests.Items {
			Expect(csr.Spec.Username).NotTo(BeElementOf(agentid.UserName(ns, "host-d"), agentid.UserName(ns, "host-r")),
				"no renewal of a cut-off agent is even asked for: %s", csr.Name)
		}

		By("going on serving host-a")
		Expect(listTargets("host-a")).To(Succeed())
		Expect(identities["host-a"].RenewNow(ctx)).To(Succeed())
		Expect(listTargets("host-a")).To(Succeed())

		By("deleting a join token that expired unused")
		expired := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "bootstrap-token-e2eold",
				Labels: map[string]string{v1alpha1.LabelAgentNamespace: ns, v1alpha1.LabelAgent: "host-a"}},
			Type: corev1.SecretTypeBootstrapToken,
			StringData: map[string]string{"token-id": "e2eold", "token-secret": "0123456789abcdef",
				"expiration": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "usage-bootstrap-authentication": "true"},
		}
		Expect(admin.Create(ctx, expired)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(expired), &corev1.Secret{}))
		}).WithContext(ctx).WithTimeout(10 * time.Second).Should(BeTrue())
	})
})
