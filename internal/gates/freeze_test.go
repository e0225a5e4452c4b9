package gates

import (
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func freezeGate(fw v1alpha1.FreezeWindowGate) *v1alpha1.Gate {
	return &v1alpha1.Gate{Spec: v1alpha1.GateSpec{FreezeWindow: &fw}}
}

// weekendFreeze freezes Friday 16:00 to Monday 08:00, Berlin time.
var weekendFreeze = v1alpha1.FreezeWindowGate{
	TimeZone: "Europe/Berlin",
	Recurring: []v1alpha1.RecurringWindow{
		{RRule: "FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", Duration: dur("64h"), Reason: "weekend"},
	},
}

func TestFreezeWindow(t *testing.T) {
	yearEnd := v1alpha1.FreezeWindowGate{Windows: []v1alpha1.TimeWindow{
		{Start: *mts("2024-12-20T00:00:00Z"), End: *mts("2025-01-02T00:00:00Z"), Reason: "year end"},
	}}
	chained := v1alpha1.FreezeWindowGate{
		TimeZone: "UTC",
		Windows: []v1alpha1.TimeWindow{
			{Start: *mts("2024-06-03T10:00:00Z"), End: *mts("2024-06-03T12:00:00Z")},
			// adjacent to the first
			{Start: *mts("2024-06-03T12:00:00Z"), End: *mts("2024-06-03T13:00:00Z")},
		},
		// overlaps the second: daily 12:30 for 2h
		Recurring: []v1alpha1.RecurringWindow{{RRule: "FREQ=DAILY;BYHOUR=12;BYMINUTE=30", Duration: dur("2h")}},
	}
	frozen := codes(ReasonFreezeActive)

	tests := []struct {
		name string
		gate v1alpha1.FreezeWindowGate
		now  string
		want want
	}{
		// Spring DST change in Berlin: Sunday 2024-03-31 02:00 CET -> 03:00 CEST.
		{"before the weekend freeze", weekendFreeze, "2024-03-29T14:59:59Z", want{result: v1alpha1.GatePass}},
		{"freeze starts Friday 16:00 CET", weekendFreeze, "2024-03-29T15:00:00Z", want{v1alpha1.GatePending, frozen, "2024-04-01T06:00:00Z"}},
		{"frozen across the DST change", weekendFreeze, "2024-03-31T12:00:00Z", want{v1alpha1.GatePending, frozen, "2024-04-01T06:00:00Z"}},
		{"last second of the freeze", weekendFreeze, "2024-04-01T05:59:59Z", want{v1alpha1.GatePending, frozen, "2024-04-01T06:00:00Z"}},
		{"opens Monday 08:00 CEST", weekendFreeze, "2024-04-01T06:00:00Z", want{result: v1alpha1.GatePass}},
		{"Friday 15:59:59 CEST is open", weekendFreeze, "2024-04-05T13:59:59Z", want{result: v1alpha1.GatePass}},
		{"next freeze starts 16:00 CEST", weekendFreeze, "2024-04-05T14:00:00Z", want{v1alpha1.GatePending, frozen, "2024-04-08T06:00:00Z"}},
		// Autumn DST change: Sunday 2024-10-27 03:00 CEST -> 02:00 CET.
		{"autumn freeze ends 08:00 CET", weekendFreeze, "2024-10-25T14:00:00Z", want{v1alpha1.GatePending, frozen, "2024-10-28T07:00:00Z"}},
		{"autumn freeze open at 08:00 CET", weekendFreeze, "2024-10-28T07:00:00Z", want{result: v1alpha1.GatePass}},

		{"absolute window: before start", yearEnd, "2024-12-19T23:59:59Z", want{result: v1alpha1.GatePass}},
		{"absolute window: start is inclusive", yearEnd, "2024-12-20T00:00:00Z", want{v1alpha1.GatePending, frozen, "2025-01-02T00:00:00Z"}},
		{"absolute window: last second", yearEnd, "2025-01-01T23:59:59Z", want{v1alpha1.GatePending, frozen, "2025-01-02T00:00:00Z"}},
		{"absolute window: end is exclusive", yearEnd, "2025-01-02T00:00:00Z", want{result: v1alpha1.GatePass}},

		{"adjacent and overlapping windows merge", chained, "2024-06-03T10:00:00Z", want{v1alpha1.GatePending, frozen, "2024-06-03T14:30:00Z"}},
		{"merged freeze opens after the recurring window", chained, "2024-06-03T14:30:00Z", want{result: v1alpha1.GatePass}},
		{"recurring window alone on another day", chained, "2024-06-04T13:00:00Z", want{v1alpha1.GatePending, frozen, "2024-06-04T14:30:00Z"}},

		{"invalid rule fails closed", v1alpha1.FreezeWindowGate{Recurring: []v1alpha1.RecurringWindow{{RRule: "FREQ=SOMETIMES", Duration: dur("1h")}}},
			"2024-06-03T10:00:00Z", want{result: v1alpha1.GateFail, codes: codes(ReasonInvalid)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(freezeGate(tt.gate), Inputs{Now: ts(tt.now)})
			check(t, got, tt.want)
			if got.Type != TypeFreezeWindow {
				t.Errorf("type = %q", got.Type)
			}
		})
	}
}

// A freeze that never lifts (a daily window longer than a day) must not loop
// forever: it stays Pending, RetryAt is where the bounded search stopped, and
// the Gate status has no next opening to show.
func TestFreezeWindowWithoutOpening(t *testing.T) {
	gate := freezeGate(v1alpha1.FreezeWindowGate{Recurring: []v1alpha1.RecurringWindow{
		{RRule: "FREQ=DAILY", Duration: dur("25h")},
	}})
	now := ts("2024-01-01T12:00:00Z")
	// Windows start each midnight and end 01:00 the day after; the search
	// stops at the first window end more than 366 days after now.
	check(t, Evaluate(gate, Inputs{Now: now}), want{v1alpha1.GatePending, codes(ReasonFreezeActive), "2025-01-02T01:00:00Z"})

	closed, next, err := ClosedAt(gate, now)
	if err != nil || !closed || next != nil {
		t.Fatalf("ClosedAt = %v, %v, %v; want closed, no next opening, no error", closed, next, err)
	}
}

func TestFreezeClosedAt(t *testing.T) {
	gate := freezeGate(weekendFreeze)
	tests := []struct {
		now      string
		closed   bool
		nextOpen string
	}{
		{"2024-03-30T00:00:00Z", true, "2024-04-01T06:00:00Z"},
		{"2024-04-02T00:00:00Z", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.now, func(t *testing.T) {
			closed, next, err := ClosedAt(gate, ts(tt.now))
			if err != nil {
				t.Fatal(err)
			}
			if closed != tt.closed {
				t.Errorf("closed = %v, want %v", closed, tt.closed)
			}
			switch {
			case tt.nextOpen == "" && next != nil:
				t.Errorf("nextOpen = %s, want none", next)
			case tt.nextOpen != "" && (next == nil || !next.Equal(ts(tt.nextOpen))):
				t.Errorf("nextOpen = %v, want %s", next, tt.nextOpen)
			}
		})
	}
}

func TestFreezeMessageNamesWindowAndLocalTime(t *testing.T) {
	got := Evaluate(freezeGate(weekendFreeze), Inputs{Now: ts("2024-03-30T00:00:00Z")})
	const wantMsg = `frozen until 2024-04-01T08:00:00+02:00 by recurring[0] ("weekend")`
	if got.Message != wantMsg {
		t.Errorf("message = %q, want %q", got.Message, wantMsg)
	}
}
