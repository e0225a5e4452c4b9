package gates

import (
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestSchedule(t *testing.T) {
	officeHours := v1alpha1.ScheduleGate{
		TimeZone: "Europe/Berlin",
		Allowed:  []v1alpha1.RecurringWindow{{RRule: "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9", Duration: dur("8h"), Reason: "office hours"}},
	}
	fortnightly := v1alpha1.ScheduleGate{
		TimeZone: "Europe/Berlin",
		Allowed: []v1alpha1.RecurringWindow{
			{RRule: "DTSTART;TZID=Europe/Berlin:20240101T100000\nRRULE:FREQ=WEEKLY;INTERVAL=2", Duration: dur("1h")},
		},
	}
	ended := v1alpha1.ScheduleGate{Allowed: []v1alpha1.RecurringWindow{{RRule: "FREQ=DAILY;UNTIL=20200101T000000Z", Duration: dur("1h")}}}
	outside := codes(ReasonScheduleOutsideWindow)

	tests := []struct {
		name string
		gate v1alpha1.ScheduleGate
		now  string
		want want
	}{
		{"Monday 09:00 CET opens the window", officeHours, "2024-03-25T08:00:00Z", want{result: v1alpha1.GatePass}},
		{"Monday 08:59:59 CET waits for 09:00", officeHours, "2024-03-25T07:59:59Z", want{v1alpha1.GatePending, outside, "2024-03-25T08:00:00Z"}},
		{"Monday 17:00 CET waits for Tuesday", officeHours, "2024-03-25T16:00:00Z", want{v1alpha1.GatePending, outside, "2024-03-26T08:00:00Z"}},
		{"Friday 16:59:59 CET is inside", officeHours, "2024-03-29T15:59:59Z", want{result: v1alpha1.GatePass}},
		{"Saturday waits for Monday 09:00 CEST, across the DST change", officeHours, "2024-03-30T10:00:00Z", want{v1alpha1.GatePending, outside, "2024-04-01T07:00:00Z"}},
		{"every other Monday from DTSTART: on", fortnightly, "2024-03-25T09:30:00Z", want{result: v1alpha1.GatePass}},
		{"every other Monday from DTSTART: off week", fortnightly, "2024-03-18T09:30:00Z", want{v1alpha1.GatePending, outside, "2024-03-25T09:00:00Z"}},
		{"a schedule that ended fails", ended, "2024-03-18T09:30:00Z", want{result: v1alpha1.GateFail, codes: codes(ReasonScheduleNoUpcomingWindow)}},
		{"an invalid zone fails closed", v1alpha1.ScheduleGate{TimeZone: "Mars/Olympus", Allowed: officeHours.Allowed}, "2024-03-25T08:00:00Z",
			want{result: v1alpha1.GateFail, codes: codes(ReasonInvalid)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(&v1alpha1.Gate{Spec: v1alpha1.GateSpec{Schedule: &tt.gate}}, Inputs{Now: ts(tt.now)})
			check(t, got, tt.want)
		})
	}
}

func TestScheduleClosedAt(t *testing.T) {
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Schedule: &v1alpha1.ScheduleGate{
		TimeZone: "Europe/Berlin",
		Allowed:  []v1alpha1.RecurringWindow{{RRule: "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9", Duration: dur("8h")}},
	}}}
	closed, next, err := ClosedAt(gate, ts("2024-03-30T10:00:00Z"))
	if err != nil || !closed || next == nil || !next.Equal(ts("2024-04-01T07:00:00Z")) {
		t.Errorf("ClosedAt(Saturday) = %v, %v, %v; want closed until 2024-04-01T07:00:00Z", closed, next, err)
	}
	closed, next, err = ClosedAt(gate, ts("2024-04-01T07:00:00Z"))
	if err != nil || closed || next != nil {
		t.Errorf("ClosedAt(Monday 09:00) = %v, %v, %v; want open", closed, next, err)
	}
}
