package gates

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A schedule is the opposite of a freeze: promotions may start only inside one
// of its recurring windows ("weekdays 09:00 for 8h"), computed like freeze
// windows (see recurrence.go). Outside them the gate is Pending with RetryAt at
// the next window's start, so a promotion created on Saturday waits for Monday
// morning. Only the start matters: a rollout that began inside a window is not
// stopped when the window ends.

type scheduleCalendar struct {
	loc     *time.Location
	allowed []*recurrence
}

// scheduleState is the schedule seen at one instant.
type scheduleState struct {
	inside bool
	// windowEnd is when the window containing the instant ends, if inside.
	windowEnd time.Time
	// nextStart is the first window start after the instant, if outside and
	// there is one.
	nextStart *time.Time
	why       string
}

// EvaluateSchedule passes when in.Now lies inside an allowed window. Outside
// every window it is Pending with schedule.outside-window and RetryAt at the
// next window's start; when no window starts again (every rule has ended) it
// fails with schedule.no-upcoming-window, since waiting would be forever.
func EvaluateSchedule(g *v1alpha1.ScheduleGate, in Inputs) Outcome {
	cal, errs := compileSchedule(g, field.NewPath("spec", TypeSchedule))
	if len(errs) > 0 {
		return invalid(TypeSchedule, errs)
	}
	st := cal.stateAt(in.Now)
	switch {
	case st.inside:
		return pass(TypeSchedule, fmt.Sprintf("inside %s until %s", st.why, formatTime(st.windowEnd, cal.loc)))
	case st.nextStart != nil:
		return pending(TypeSchedule,
			fmt.Sprintf("outside the allowed windows; the next one starts at %s", formatTime(*st.nextStart, cal.loc)),
			timePtr(*st.nextStart), ReasonScheduleOutsideWindow)
	}
	return fail(TypeSchedule, "outside the allowed windows, and none starts again", ReasonScheduleNoUpcomingWindow)
}

// compileSchedule validates a schedule gate and prepares its calendar.
func compileSchedule(g *v1alpha1.ScheduleGate, path *field.Path) (*scheduleCalendar, field.ErrorList) {
	if g == nil {
		return nil, field.ErrorList{field.Required(path, "set the schedule")}
	}
	var errs field.ErrorList
	loc, zerr := loadZone(g.TimeZone, path.Child("timeZone"))
	if zerr != nil {
		errs = append(errs, zerr)
		loc = time.UTC
	}
	if len(g.Allowed) == 0 {
		errs = append(errs, field.Required(path.Child("allowed"), "list at least one window, such as rrule FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9 with duration 8h"))
	}
	cal := &scheduleCalendar{loc: loc}
	allowed, rerrs := parseRecurrences(g.Allowed, loc, path, "allowed")
	cal.allowed, errs = allowed, append(errs, rerrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return cal, nil
}

func (c *scheduleCalendar) stateAt(now time.Time) scheduleState {
	var st scheduleState
	for _, r := range c.allowed {
		if _, end, ok := r.covering(now); ok {
			if !st.inside || end.After(st.windowEnd) {
				st.windowEnd = end
				st.why = r.label
				if r.reason != "" {
					st.why += fmt.Sprintf(" (%q)", r.reason)
				}
			}
			st.inside = true
		}
	}
	if st.inside {
		return st
	}
	for _, r := range c.allowed {
		if s, ok := r.nextStart(now); ok && (st.nextStart == nil || s.Before(*st.nextStart)) {
			st.nextStart = timePtr(s)
		}
	}
	return st
}
