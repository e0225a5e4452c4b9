package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("time and security gates", func() {
	var (
		admin client.Client
		ns    string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
	})

	guardedBy := func(ctx SpecContext, gate *v1alpha1.Gate) {
		GinkgoHelper()
		Expect(admin.Create(ctx, gate)).To(Succeed())
		env := environment(ns, "prod")
		env.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: gate.Name}}
		Expect(admin.Create(ctx, env)).To(Succeed())
	}

	It("a freeze window holds a promotion and lets it go when the window ends, without polling", func(ctx SpecContext) {
		now := time.Now().UTC().Truncate(time.Second)
		ends := now.Add(6 * time.Second)
		guardedBy(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "freeze"},
			Spec: v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{
				Windows: []v1alpha1.TimeWindow{{Start: metav1.NewTime(now.Add(-time.Hour)), End: metav1.NewTime(ends), Reason: "incident"}}}}})

		gate := &v1alpha1.Gate{}
		Eventually(func() *bool {
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "freeze"}, gate)
			return gate.Status.Closed
		}).WithContext(ctx).WithTimeout(10 * time.Second).Should(Equal(ptr.To(true)))
		Expect(gate.Status.NextOpenAt.Time).To(BeTemporally("==", ends))

		promo := promote(ctx, admin, ns, "shop-1", "prod")
		held := reachesPhase(ctx, promo, v1alpha1.PromotionEvaluating)
		Expect(held.Status.Decision.ReasonCodes).To(Equal([]string{"freeze.active"}))
		Expect(held.Status.Gates[0].RetryAt.Time).To(BeTemporally("==", ends))

		got := reachesPhase(ctx, promo, v1alpha1.PromotionSucceeded)
		Expect(got.Status.Decision.DecidedAt.Time).To(BeTemporally(">=", ends))
	})

	It("a recurring freeze in a non-UTC time zone holds a promotion until its next opening", func(ctx SpecContext) {
		berlin, err := time.LoadLocation("Europe/Berlin")
		Expect(err).NotTo(HaveOccurred())
		start := time.Now().In(berlin).Truncate(time.Second).Add(2 * time.Second)
		opens := start.Add(8 * time.Second)
		guardedBy(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "daily-freeze"},
			Spec: v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{TimeZone: "Europe/Berlin",
				Recurring: []v1alpha1.RecurringWindow{{
					RRule:    "DTSTART;TZID=Europe/Berlin:" + start.Format("20060102T150405") + "\nRRULE:FREQ=DAILY",
					Duration: metav1.Duration{Duration: 8 * time.Second}, Reason: "daily batch"}}}}})
		time.Sleep(time.Until(start) + 200*time.Millisecond)

		promo := promote(ctx, admin, ns, "shop-1", "prod")
		held := reachesPhase(ctx, promo, v1alpha1.PromotionEvaluating)
		Expect(held.Status.Decision.ReasonCodes).To(Equal([]string{"freeze.active"}))
		Expect(held.Status.Gates[0].RetryAt.Time).To(BeTemporally("==", opens))
		got := reachesPhase(ctx, promo, v1alpha1.PromotionSucceeded)
		Expect(got.Status.Decision.DecidedAt.Time).To(BeTemporally(">=", opens))
	})

	It("a missing scan report keeps a promotion pending, then denies it when the gate's timeout passes", func(ctx SpecContext) {
		guardedBy(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-criticals"},
			Spec: v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{
				MaxSeverity: v1alpha1.SeverityHigh, Timeout: metav1.Duration{Duration: 4 * time.Second}}}})
		promo := promote(ctx, admin, ns, "shop-1", "prod")
		pending := reachesPhase(ctx, promo, v1alpha1.PromotionEvaluating)
		Expect(pending.Status.Decision.ReasonCodes).To(ContainElement("security.report-missing"))
		denied := reachesPhase(ctx, promo, v1alpha1.PromotionRejected)
		Expect(denied.Status.Decision.ReasonCodes).To(ContainElement("security.timeout"))
	})

	It("refuses an RRULE that does not parse, naming the field", func(ctx SpecContext) {
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "weekends"},
			Spec: v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{TimeZone: "Europe/Berlin",
				Recurring: []v1alpha1.RecurringWindow{{RRule: "FREQ=FORTNIGHTLY;BYDAY=SA", Duration: metav1.Duration{Duration: 48 * time.Hour}}}}}})).To(Succeed())
		Eventually(func() string {
			gate := &v1alpha1.Gate{}
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "weekends"}, gate)
			return conditionMessage(gate.Status.Conditions, v1alpha1.ConditionStalled)
		}).WithContext(ctx).WithTimeout(10 * time.Second).Should(ContainSubstring("spec.freezeWindow.recurring[0].rrule"))
	})
})
