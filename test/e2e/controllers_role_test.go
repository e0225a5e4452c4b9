package e2e

import (
	"os/exec"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agent"
	"github.com/stella-ops/stella/internal/scheme"
	"github.com/stella-ops/stella/test/framework"
)

var _ = Describe("stella controllers on its own role", func() {
	It("approves an agent's join and takes a promotion to Succeeded as the stella-controllers ServiceAccount, which is refused what an admin may do", func(ctx SpecContext) {
		api := startServer(framework.ServerOptions{NoControllers: true})
		admin := api.AdminClient()
		ns := newNamespace(ctx, admin)
		forbidden := func(err error) {
			GinkgoHelper()
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
		}

		By("install-crds granting the controllers their role")
		Expect(admin.Delete(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "stella-controllers"}})).To(Succeed())
		out, err := framework.Run(ctx, bin.Stella, nil, "install-crds", "--kubeconfig", api.Kubeconfig())
		Expect(err).NotTo(HaveOccurred(), out)
		binding := &rbacv1.ClusterRoleBinding{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: "stella-controllers"}, binding)).To(Succeed())
		Expect(binding.Subjects).To(ConsistOf(HaveField("Name", "stella-controllers")))

		kubeconfig, err := api.ServiceAccountKubeconfig(ctx, GinkgoT().TempDir(), v1alpha1.SystemNamespace, "stella-controllers")
		Expect(err).NotTo(HaveOccurred())
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		sa, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		Expect(err).NotTo(HaveOccurred())

		By("refusing the ServiceAccount what the reconcilers never do")
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ssh-key"}, StringData: map[string]string{"id_ed25519": "not a key"}}
		Expect(admin.Create(ctx, secret)).To(Succeed())
		Expect(sa.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})).To(Succeed(), "a deployer reads its Target's credentials by name")
		forbidden(sa.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)))
		forbidden(sa.Delete(ctx, secret))
		forbidden(sa.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		forbidden(sa.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "stella-controllers-admin"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: v1alpha1.SystemNamespace, Name: "stella-controllers"}},
		}))
		forbidden(sa.Create(ctx, &v1alpha1.Approval{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "self-approval"},
			Spec:       v1alpha1.ApprovalSpec{Promotion: "any", Decision: v1alpha1.ApprovalApprove},
		}))

		By("running the controllers with its token")
		session, err := gexec.Start(exec.Command(bin.Stella, "controllers", "--kubeconfig", kubeconfig, "--evidence-dir", GinkgoT().TempDir()),
			GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Terminate().Wait(30 * time.Second) })
		Eventually(func() string { return leaseHolder(ctx, admin) }).WithContext(ctx).WithTimeout(30 * time.Second).ShouldNot(BeEmpty())

		By("approving the certificate request of an agent that joins with its token")
		args := joinArgsOn(ctx, api.Kubeconfig(), ns, "host-1")
		stateDir := GinkgoT().TempDir()
		Expect(agent.Join(ctx, stateDir, ns, "host-1", agent.JoinOptions{Server: args[1], CAHash: args[3], Token: args[5], CertTTL: time.Hour})).To(Succeed())
		id, err := agent.LoadIdentity(stateDir, ns, "host-1", time.Hour)
		Expect(err).NotTo(HaveOccurred())
		agentCfg, err := id.RESTConfig()
		Expect(err).NotTo(HaveOccurred())
		host, err := client.New(agentCfg, client.Options{Scheme: scheme.New()})
		Expect(err).NotTo(HaveOccurred())

		By("deciding, dispatching, sealing and finishing a promotion")
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, devEnvironment(ns))).To(Succeed())
		Expect(admin.Create(ctx, dockerTarget(ns, "web-1", "host-1"))).To(Succeed())
		promo := promote(ctx, admin, ns, "shop-1", "dev")
		var tasks v1alpha1.DeployTaskList
		Eventually(func() []v1alpha1.DeployTask {
			_ = host.List(ctx, &tasks, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelAgent: "host-1"})
			return tasks.Items
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(HaveLen(1), "the agent sees the DeployTask the controllers created")
		report(ctx, host, &tasks.Items[0], v1alpha1.DeployTaskSucceeded, "deployed shop-1")
		done := reachesPhaseOn(ctx, admin, promo, v1alpha1.PromotionSucceeded)
		Expect(done.Status.Decision).NotTo(BeNil())
		Expect(done.Status.Decision.Result).To(Equal(v1alpha1.DecisionAllow))
		sealedPacket(ctx, admin, done)
		Expect(session).NotTo(gexec.Exit(), "the controllers run on, refused nothing they need")
	})
})
