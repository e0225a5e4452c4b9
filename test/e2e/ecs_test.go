package e2e

import (
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ecsdriver "github.com/stella-ops/stella/agents/ecs"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/ecsfake"
)

// ECS cannot run here: this story's ECS is ecsfake, a strict model of the
// ECS API served on 127.0.0.1, which the server's real AWS SDK client talks
// to through the Target's endpoint override.
var _ = Describe("a release deployed by the server to an ECS service (modelled ECS)", func() {
	It("registers a pinned revision, fails when the circuit breaker rolls a crashing release back, and reports drift", func(ctx SpecContext) {
		fake := ecsfake.Start("eu-west-1")
		DeferCleanup(fake.Close)
		fake.AllowKey("AKIADEPLOYER00000000", true)
		client := fake.Client("AKIADEPLOYER00000000")
		register := func(image string) string {
			out, err := client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("shop"),
				ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("api"), Image: aws.String(image)}}})
			Expect(err).NotTo(HaveOccurred())
			return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
		}
		fake.CreateService("prod", "api", register("127.0.0.1:5000/shop/api:1.0"), 2)
		refs := map[string]string{}
		for i, v := range []string{"v1", "crash"} {
			refs[v] = "127.0.0.1:5000/shop/api@sha256:" + strings.Repeat(string(rune('a'+i)), 64)
		}
		fake.Crash(refs["crash"])

		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "aws"}, StringData: map[string]string{
			ecsdriver.SecretAccessKeyID: "AKIADEPLOYER00000000", ecsdriver.SecretSecretAccessKey: "secret",
		}})).To(Succeed())
		prodEnvironment(ctx, ns, v1alpha1.StrategyAllAtOnce)
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod-ecs", Labels: map[string]string{"env": "prod"}},
			Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeECS, ECS: &v1alpha1.ECSTarget{
				Cluster: "prod", Service: "api", Region: "eu-west-1", Endpoint: fake.URL, CredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: "aws"},
			}},
		})).To(Succeed())
		Expect(admin.Create(ctx, appRelease(ns, "shop-v1", "1.0.0", refs["v1"]))).To(Succeed())
		Expect(admin.Create(ctx, appRelease(ns, "shop-crash", "2.0.0", refs["crash"]))).To(Succeed())
		runningImage := func() string {
			svc, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"api"}})
			if err != nil || len(svc.Services) != 1 {
				return ""
			}
			td, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: svc.Services[0].TaskDefinition})
			if err != nil {
				return ""
			}
			return aws.ToString(td.TaskDefinition.ContainerDefinitions[0].Image)
		}

		By("promoting v1: the service runs a new revision pinned to its digest")
		endsIn(ctx, promote(ctx, admin, ns, "shop-v1", "prod"), v1alpha1.PromotionSucceeded)
		Expect(runningImage()).To(Equal(refs["v1"]))
		Eventually(target(ctx, ns, "prod-ecs")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftInSync), HaveField("Observed.Release", "shop-v1")))

		By("promoting a release whose tasks crash: the circuit breaker rolls back and the promotion fails")
		crash := endsIn(ctx, promote(ctx, admin, ns, "shop-crash", "prod"), v1alpha1.PromotionFailed)
		task := taskOf(ctx, crash, "prod-ecs")
		Expect(task.Status.Phase).To(Equal(v1alpha1.DeployTaskRolledBack))
		Expect(task.Status.Message).To(ContainSubstring("circuit breaker rolled"))
		Expect(runningImage()).To(Equal(refs["v1"]))

		By("pointing the service at another revision by hand: the target is reported Drifted")
		_, err := client.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("api"),
			TaskDefinition: aws.String(register("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("f", 64)))})
		Expect(err).NotTo(HaveOccurred())
		Eventually(target(ctx, ns, "prod-ecs")).WithContext(ctx).WithTimeout(30 * time.Second).Should(
			HaveField("Drift", v1alpha1.DriftDrifted))
	})
})
