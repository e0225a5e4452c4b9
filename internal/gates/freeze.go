package gates

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A freeze blocks promotions while any of its windows covers the clock:
// absolute windows [start, end) and recurring windows (see recurrence.go).
// While closed the gate is Pending, not Fail: a freeze delays a promotion, it
// does not judge the release. RetryAt is the instant the freeze lifts, found by
// merging every window that overlaps or touches the one covering now, so the
// promotion is requeued once, for exactly that moment.

// freezeHorizon bounds how far ahead recurring windows are followed when
// looking for the end of a freeze. A freeze made of recurring windows that
// still covers the clock that far ahead has no opening the gate can name; its
// RetryAt is then the instant the search stopped, where it resumes.
const freezeHorizon = 366 * 24 * time.Hour

// maxMergeSteps bounds the merge of chained windows.
const maxMergeSteps = 4096

type freezeCalendar struct {
	loc       *time.Location
	windows   []absoluteWindow
	recurring []*recurrence
}

type absoluteWindow struct {
	start, end time.Time
	reason     string
	label      string
}

// freezeState is the calendar seen at one instant.
type freezeState struct {
	closed bool
	// opensAt is when the freeze lifts; nil while open, or when no opening
	// was found within the horizon.
	opensAt *time.Time
	// searchedTo is, for a closed freeze with opensAt nil, the instant up to
	// which it is known to stay closed.
	searchedTo time.Time
	// why names the windows that cover the instant.
	why []string
}

// EvaluateFreezeWindow passes unless a freeze window covers in.Now; then it is
// Pending with freeze.active and RetryAt when the freeze lifts.
func EvaluateFreezeWindow(g *v1alpha1.FreezeWindowGate, in Inputs) Outcome {
	cal, errs := compileFreeze(g, field.NewPath("spec", TypeFreezeWindow))
	if len(errs) > 0 {
		return invalid(TypeFreezeWindow, errs)
	}
	st := cal.stateAt(in.Now)
	if !st.closed {
		return pass(TypeFreezeWindow, "no freeze window is active")
	}
	why := strings.Join(st.why, ", ")
	if st.opensAt != nil {
		return pending(TypeFreezeWindow,
			fmt.Sprintf("frozen until %s by %s", formatTime(*st.opensAt, cal.loc), why),
			timePtr(*st.opensAt), ReasonFreezeActive)
	}
	return pending(TypeFreezeWindow,
		fmt.Sprintf("frozen by %s through at least %s; no opening found within %d days", why, formatTime(st.searchedTo, cal.loc), int(freezeHorizon.Hours()/24)),
		timePtr(st.searchedTo), ReasonFreezeActive)
}

// compileFreeze validates a freeze gate and prepares its calendar.
func compileFreeze(g *v1alpha1.FreezeWindowGate, path *field.Path) (*freezeCalendar, field.ErrorList) {
	var errs field.ErrorList
	if g == nil {
		return nil, field.ErrorList{field.Required(path, "set the freeze window")}
	}
	loc, zerr := loadZone(g.TimeZone, path.Child("timeZone"))
	if zerr != nil {
		errs = append(errs, zerr)
		loc = time.UTC // keep validating the rest
	}
	if len(g.Windows) == 0 && len(g.Recurring) == 0 {
		errs = append(errs, field.Required(path, "set at least one of windows and recurring"))
	}
	cal := &freezeCalendar{loc: loc}
	for i, w := range g.Windows {
		p := path.Child("windows").Index(i)
		if !w.End.After(w.Start.Time) {
			errs = append(errs, field.Invalid(p.Child("end"), w.End.UTC().Format(time.RFC3339), "must be after start ("+w.Start.UTC().Format(time.RFC3339)+"): the window is [start, end)"))
			continue
		}
		cal.windows = append(cal.windows, absoluteWindow{start: w.Start.Time, end: w.End.Time, reason: w.Reason, label: fmt.Sprintf("windows[%d]", i)})
	}
	recurring, rerrs := parseRecurrences(g.Recurring, loc, path, "recurring")
	cal.recurring, errs = recurring, append(errs, rerrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return cal, nil
}

// stateAt says whether the calendar is closed at now and when it opens.
func (c *freezeCalendar) stateAt(now time.Time) freezeState {
	end, _, why, covered := c.coverEnd(now, true)
	if !covered {
		return freezeState{}
	}
	st := freezeState{closed: true, why: why}
	t := end
	for range maxMergeSteps {
		next, byRecurring, _, covered := c.coverEnd(t, false)
		if !covered {
			st.opensAt = timePtr(t)
			return st
		}
		if byRecurring && t.Sub(now) > freezeHorizon {
			break
		}
		t = next
	}
	st.searchedTo = t
	return st
}

// coverEnd returns the latest end among the windows that contain t, whether a
// recurring window is among them and, if describe is set, labels for them.
func (c *freezeCalendar) coverEnd(t time.Time, describe bool) (end time.Time, byRecurring bool, why []string, covered bool) {
	note := func(label, reason string) {
		if !describe {
			return
		}
		if reason != "" {
			label += fmt.Sprintf(" (%q)", reason)
		}
		why = append(why, label)
	}
	for _, w := range c.windows {
		if !t.Before(w.start) && t.Before(w.end) {
			if !covered || w.end.After(end) {
				end = w.end
			}
			covered = true
			note(w.label, w.reason)
		}
	}
	for _, r := range c.recurring {
		if _, e, ok := r.covering(t); ok {
			if !covered || e.After(end) {
				end = e
			}
			covered, byRecurring = true, true
			note(r.label, r.reason)
		}
	}
	return end, byRecurring, why, covered
}
