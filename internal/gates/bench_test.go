package gates

import (
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// The promotion benchmark evaluates a freeze gate per promotion; these keep
// an eye on its cost (decision latency p50 <= 20ms is the budget for all
// gates together).
func BenchmarkEvaluate(b *testing.B) {
	benches := []struct {
		name string
		gate *v1alpha1.Gate
	}{
		{"freeze-weekly", freezeGate(weekendFreeze)},
		{"freeze-hourly", freezeGate(v1alpha1.FreezeWindowGate{TimeZone: "Europe/Berlin", Recurring: []v1alpha1.RecurringWindow{
			{RRule: "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10", Duration: dur("30m")},
		}})},
		{"schedule-weekdays", &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Schedule: &v1alpha1.ScheduleGate{
			TimeZone: "Europe/Berlin",
			Allowed:  []v1alpha1.RecurringWindow{{RRule: "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9", Duration: dur("8h")}},
		}}}},
	}
	in := Inputs{Now: ts("2024-03-30T10:00:00Z")}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				Evaluate(bb.gate, in)
			}
		})
	}
}
