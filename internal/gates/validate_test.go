package gates

import (
	"strings"
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestValidate(t *testing.T) {
	freeze := func(zone, rule, duration string) v1alpha1.GateSpec {
		return v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{
			TimeZone:  zone,
			Recurring: []v1alpha1.RecurringWindow{{RRule: "FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", Duration: dur("64h")}, {RRule: rule, Duration: dur(duration)}},
		}}
	}
	tests := []struct {
		name string
		spec v1alpha1.GateSpec
		// errs are the expected error lines, each by its prefix: the field
		// path and the kind of problem. None means valid.
		errs []string
	}{
		{"a valid freeze", freeze("Europe/Berlin", "DTSTART;TZID=Europe/Berlin:20240105T160000\nRRULE:FREQ=WEEKLY", "1h"), nil},
		{"a rule that does not parse", freeze("Europe/Berlin", "FREQ=WEEKLYY;BYDAY=FR", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "FREQ=WEEKLYY;BYDAY=FR": does not parse (undefined frequency: WEEKLYY): write an RFC 5545 rule such as FREQ=WEEKLY;BYDAY=FR;BYHOUR=16`}},
		{"a rule out of range", freeze("UTC", "FREQ=DAILY;BYHOUR=24", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "FREQ=DAILY;BYHOUR=24": is out of range (byhour must be between 0 and 23)`}},
		{"an unknown attribute", freeze("UTC", "FREQ=DAILY;BYFULLMOON=1", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "FREQ=DAILY;BYFULLMOON=1": does not parse (unknown RRULE property: BYFULLMOON)`}},
		{"COUNT without DTSTART", freeze("UTC", "FREQ=DAILY;COUNT=3", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "FREQ=DAILY;COUNT=3": COUNT needs a DTSTART line`}},
		{"DTSTART in another zone", freeze("Europe/Berlin", "DTSTART;TZID=America/New_York:20240101T100000\nRRULE:FREQ=DAILY", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "DTSTART;TZID=America/New_York:20240101T100000\nRRULE:FREQ=DAILY": DTSTART is in time zone America/New_York but the gate's timeZone is Europe/Berlin`}},
		{"February 30th", freeze("UTC", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30": never occurs`}},
		{"no sixth Monday", freeze("UTC", "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6": never occurs`}},
		{"three lines", freeze("UTC", "DTSTART:20240101T000000Z\nRRULE:FREQ=DAILY\nEXDATE:20240102T000000Z", "1h"),
			[]string{`spec.freezeWindow.recurring[1].rrule: Invalid value: "DTSTART:20240101T000000Z\nRRULE:FREQ=DAILY\nEXDATE:20240102T000000Z": has more than two lines`}},
		{"unknown zone and zero duration together", freeze("Europe/Berln", "FREQ=DAILY", "0s"),
			[]string{
				`spec.freezeWindow.timeZone: Invalid value: "Europe/Berln": is not a known IANA time zone`,
				`spec.freezeWindow.recurring[1].duration: Invalid value: "0s": must be positive`,
			}},
		{"the host's zone", freeze("Local", "FREQ=DAILY", "1h"), []string{`spec.freezeWindow.timeZone: Invalid value: "Local": the host's zone is not allowed`}},
		{"too long a window", freeze("UTC", "FREQ=YEARLY", "9000h"), []string{`spec.freezeWindow.recurring[1].duration: Invalid value: "9000h0m0s": must be at most 8784h`}},
		{"absolute window ends before it starts", v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{Windows: []v1alpha1.TimeWindow{
			{Start: *mts("2024-12-20T00:00:00Z"), End: *mts("2024-12-20T00:00:00Z")},
		}}}, []string{`spec.freezeWindow.windows[0].end: Invalid value: "2024-12-20T00:00:00Z": must be after start`}},
		{"an empty freeze", v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{}}, []string{`spec.freezeWindow: Required value: set at least one of windows and recurring`}},
		{"schedule rule names its field", v1alpha1.GateSpec{Schedule: &v1alpha1.ScheduleGate{Allowed: []v1alpha1.RecurringWindow{{RRule: "BYHOUR=9", Duration: dur("8h")}}}},
			[]string{`spec.schedule.allowed[0].rrule: Invalid value: "BYHOUR=9": does not parse (RRULE property FREQ is required)`}},
		{"unknown severity", v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{MaxSeverity: "Severe"}},
			[]string{`spec.securityVerdict.maxSeverity: Unsupported value: "Severe"`}},
		{"soak without environment", v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{Duration: dur("1h")}}, []string{`spec.soak.environment: Required value`}},
		{"dependency without environment", v1alpha1.GateSpec{Dependency: &v1alpha1.DependencyGate{}}, []string{`spec.dependency.environment: Required value`}},
		{"approval count", v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: -1}}, []string{`spec.approval.count: Invalid value: -1`}},
		{"a policy is not checked here", v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "not cue at all {"}}, nil},
		{"two gate types", v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{}, Approval: &v1alpha1.ApprovalGate{}}, []string{"spec: approval and soak are set: set exactly one gate type"}},
		{"no gate type", v1alpha1.GateSpec{}, []string{"spec: no gate type is set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(&v1alpha1.Gate{Spec: tt.spec})
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.errs)
			}
			msg := err.Error()
			if len(tt.errs) > 1 {
				msg = strings.TrimSuffix(strings.TrimPrefix(msg, "["), "]")
			}
			for _, want := range tt.errs {
				if !strings.Contains(msg, want) {
					t.Errorf("Validate() = %q\nwant it to contain %q", err, want)
				}
			}
			if len(tt.errs) == 1 && !strings.HasPrefix(msg, tt.errs[0]) {
				t.Errorf("Validate() = %q\nwant it to start with %q", err, tt.errs[0])
			}
		})
	}
}
