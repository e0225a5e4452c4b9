package gates

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func mustRecurrence(t *testing.T, rule, zone string) *recurrence {
	t.Helper()
	loc, ferr := loadZone(zone, field.NewPath("timeZone"))
	if ferr != nil {
		t.Fatal(ferr)
	}
	r, errs := parseRecurrence(v1alpha1.RecurringWindow{RRule: rule, Duration: dur("1h")}, loc, field.NewPath("rrule"))
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	return r
}

// Restarting a rule at a later period must give exactly the occurrences the
// rule has when expanded from its anchor; otherwise results would depend on
// how long ago 2001 was.
func TestRebasedRuleMatchesFullExpansion(t *testing.T) {
	rules := []struct{ rule, zone string }{
		{"FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", "Europe/Berlin"},
		{"FREQ=WEEKLY;INTERVAL=3;BYHOUR=9,17", "America/New_York"},
		{"FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=SU,MO", "Europe/Berlin"},
		{"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=18", "Europe/Berlin"},
		{"FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=31", "UTC"},
		{"FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "Asia/Tokyo"},
		{"FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24,31", "Europe/Berlin"},
		{"FREQ=YEARLY;INTERVAL=4", "UTC"},
		{"FREQ=DAILY;INTERVAL=3;BYHOUR=2;BYMINUTE=30", "Europe/Berlin"}, // 02:30 does not exist once a year
		{"FREQ=HOURLY;INTERVAL=5", "Europe/Berlin"},
		{"FREQ=HOURLY;INTERVAL=7;BYDAY=SA,SU", "America/New_York"},
		{"FREQ=MINUTELY;INTERVAL=45;BYHOUR=1,2,3", "Europe/Berlin"},
		{"DTSTART;TZID=Europe/Berlin:20230315T113000\nRRULE:FREQ=WEEKLY;INTERVAL=2", "Europe/Berlin"},
		{"DTSTART:20230315T113000Z\nRRULE:FREQ=MONTHLY;INTERVAL=2;BYHOUR=7", "Europe/Berlin"},
		{"DTSTART:20240229T120000\nRRULE:FREQ=YEARLY", "UTC"},
	}
	// Instants around both 2024 DST changes in Europe and the US, and a leap day.
	instants := []string{
		"2024-02-29T11:00:00Z", "2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z", "2024-03-31T00:30:00Z",
		"2024-03-31T01:00:00Z", "2024-03-31T02:15:00Z", "2024-06-15T12:00:00Z", "2024-10-27T00:30:00Z",
		"2024-10-27T01:30:00Z", "2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z", "2024-12-31T23:59:59Z",
		"2028-02-29T12:00:00Z",
	}
	for _, rr := range rules {
		r := mustRecurrence(t, rr.rule, rr.zone)
		full := *r
		full.rebase = false
		for _, s := range instants {
			at := ts(s)
			for _, back := range []time.Duration{0, 3 * time.Hour, 50 * time.Hour, 40 * 24 * time.Hour} {
				after := at.Add(-back)
				gotL, okL := r.latestStart(after, at)
				wantL, wantOkL := full.latestStart(after, at)
				if okL != wantOkL || !gotL.Equal(wantL) {
					t.Errorf("%q in %s: latestStart(%s, %s) = %s %v, full expansion gives %s %v", rr.rule, rr.zone, after, at, gotL, okL, wantL, wantOkL)
				}
			}
			gotN, okN := r.nextStart(at)
			wantN, wantOkN := full.nextStart(at)
			if okN != wantOkN || !gotN.Equal(wantN) {
				t.Errorf("%q in %s: nextStart(%s) = %s %v, full expansion gives %s %v", rr.rule, rr.zone, at, gotN, okN, wantN, wantOkN)
			}
		}
	}
}

// Parts a rule leaves out come from the fixed anchor, 2001-01-01T00:00:00 (a
// Monday) in the gate's zone, never from the current time.
func TestAnchorDefaults(t *testing.T) {
	tests := []struct {
		rule, zone, after, next string
	}{
		{"FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", "Europe/Berlin", "2024-06-03T10:17:43Z", "2024-06-07T14:00:00Z"},
		{"FREQ=WEEKLY", "UTC", "2024-06-05T10:17:43Z", "2024-06-10T00:00:00Z"},                      // Mondays
		{"FREQ=MONTHLY", "UTC", "2024-06-05T10:17:43Z", "2024-07-01T00:00:00Z"},                     // the 1st
		{"FREQ=YEARLY", "Europe/Berlin", "2024-06-05T10:17:43Z", "2024-12-31T23:00:00Z"},            // January 1st, local midnight
		{"FREQ=DAILY;BYHOUR=9", "America/New_York", "2024-03-10T12:00:00Z", "2024-03-10T13:00:00Z"}, // 09:00 EDT
		// Fortnights counted from the week of 2001-01-01: 2024-03-18 is in an odd week, 2024-03-25 in an even one.
		{"FREQ=WEEKLY;INTERVAL=2;BYHOUR=10", "Europe/Berlin", "2024-03-17T00:00:00Z", "2024-03-25T09:00:00Z"},
		{"DTSTART;TZID=Europe/Berlin:20240108T100000\nRRULE:FREQ=WEEKLY;INTERVAL=2", "Europe/Berlin", "2024-03-17T00:00:00Z", "2024-03-18T09:00:00Z"},
		// A DTSTART in UTC is an instant read on the gate's wall clock: 15:00Z is 16:00 in Berlin in winter.
		{"DTSTART:20240105T150000Z\nRRULE:FREQ=WEEKLY", "Europe/Berlin", "2024-06-01T00:00:00Z", "2024-06-07T14:00:00Z"},
		{"freq=weekly;byday=fr;byhour=16\r\n", "Europe/Berlin", "2024-06-03T10:17:43Z", "2024-06-07T14:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			got, ok := mustRecurrence(t, tt.rule, tt.zone).nextStart(ts(tt.after))
			if !ok || !got.Equal(ts(tt.next)) {
				t.Errorf("next occurrence after %s = %s (found %v), want %s", tt.after, got.UTC(), ok, tt.next)
			}
		})
	}
}

func TestAddWallClock(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		start string
		d     string
		want  string
	}{
		{"2024-03-29T15:00:00Z", "64h", "2024-04-01T06:00:00Z"}, // spring: 63h of real time
		{"2024-10-25T14:00:00Z", "64h", "2024-10-28T07:00:00Z"}, // autumn: 65h of real time
		{"2024-06-07T14:00:00Z", "64h", "2024-06-10T06:00:00Z"}, // no change: 64h
		{"2024-03-31T00:30:00Z", "1h", "2024-03-31T01:30:00Z"},  // 01:30 CET + 1h is 02:30, which does not exist: 03:30 CEST
	}
	for _, tt := range tests {
		if got := addWallClock(ts(tt.start), dur(tt.d).Duration, berlin); !got.Equal(ts(tt.want)) {
			t.Errorf("addWallClock(%s, %s) = %s, want %s", tt.start, tt.d, got.UTC().Format(time.RFC3339), tt.want)
		}
	}
}
