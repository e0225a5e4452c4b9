package main

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A promotion deleted and created again under its name must export its own
// rollout record, never the one sealed for its predecessor.
func TestRecordOfTellsIncarnationsApart(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "new-uid", CreationTimestamp: created}}
	packet := func(promotion, uid string, age time.Duration) *v1alpha1.EvidencePacket {
		return &v1alpha1.EvidencePacket{
			ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created.Add(age))},
			Spec:       v1alpha1.EvidencePacketSpec{Promotion: promotion, PromotionUID: types.UID(uid)},
		}
	}
	for _, tc := range []struct {
		name   string
		packet *v1alpha1.EvidencePacket
		want   bool
	}{
		{"same promotion UID", packet("p", "new-uid", time.Minute), true},
		{"the deleted predecessor's record", packet("p", "old-uid", -time.Hour), false},
		{"another UID even when younger", packet("p", "old-uid", time.Hour), false},
		{"another promotion", packet("q", "new-uid", time.Minute), false},
		{"sealed before packets named a UID, after the promotion", packet("p", "", time.Minute), true},
		{"sealed before packets named a UID, before the promotion", packet("p", "", -time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := recordOf(tc.packet, promo); got != tc.want {
				t.Errorf("recordOf = %v, want %v", got, tc.want)
			}
		})
	}
}
