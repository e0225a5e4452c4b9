package gates

import (
	"fmt"
	"strings"
	"time"
	// The IANA database is embedded so that time zones load on hosts without
	// one (distroless images, air-gapped machines). A host's own copy, when it
	// has one, still takes precedence: that is how Go's time package works.
	_ "time/tzdata"

	rrule "github.com/teambition/rrule-go"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// How recurring windows work, and why.
//
// A RecurringWindow is an RFC 5545 RRULE, optionally preceded by a DTSTART
// line, plus a duration. Each occurrence of the rule starts a window that lasts
// the duration.
//
// Time zone. Rules are expanded on the wall clock of the gate's timeZone, so
// "FREQ=WEEKLY;BYDAY=FR;BYHOUR=16" is 16:00 in Berlin on every Friday, in
// winter (15:00 UTC) and in summer (14:00 UTC) alike.
//
// Anchor. RFC 5545 takes unspecified parts of a rule from DTSTART: BYMINUTE and
// BYSECOND for an hourly-or-coarser rule, the weekday of a weekly rule, the day
// of a monthly rule, and the phase of INTERVAL. rrule-go would use the current
// time, which makes "BYHOUR=16" mean 16:37:12 on one day and 16:05:40 on the
// next, and is not deterministic. A rule without DTSTART is therefore anchored
// at 2001-01-01T00:00:00 in the gate's zone: a Monday, the first of a month and
// of a year, at midnight. So BYHOUR=16 means 16:00:00, FREQ=WEEKLY alone means
// Mondays, FREQ=MONTHLY the 1st, FREQ=YEARLY January 1st, FREQ=DAILY midnight,
// and "FREQ=WEEKLY;INTERVAL=2" counts fortnights from the week of 2001-01-01.
// Write a DTSTART line to choose other defaults or another phase. COUNT needs
// a DTSTART: counted from 2001 it would long be used up.
//
// A DTSTART with TZID must name the gate's timeZone (two zones for one window
// is a mistake waiting to happen); a DTSTART in UTC ("...Z") names an instant,
// which is read on the gate's wall clock; a DTSTART without zone is read in the
// gate's zone.
//
// Duration. A duration is measured on the same wall clock: a window that starts
// Friday 16:00 and lasts 64h ends Monday 08:00 local time, even when a DST
// change falls in between (the window then lasts 63h or 65h of real time).
// That is what a team that says "freeze from Friday 16:00 to Monday 08:00"
// means. Durations must be positive and at most 366 days.
//
// Cost. Expanding a rule from its anchor to now would walk every occurrence
// since 2001. Instead each query restarts the rule at the start of a period
// (year, month, week from WKST, day, hour, ...) shortly before the instant
// asked about, an INTERVAL multiple of periods after the anchor. With every
// default made explicit first, that gives exactly the occurrences the rule has
// when expanded from the anchor, so the result does not depend on how far the
// anchor lies in the past. Rules with COUNT are expanded from their DTSTART.

// anchorYear etc. is the fixed DTSTART of rules that have none.
const (
	anchorYear  = 2001
	anchorMonth = time.January
	anchorDay   = 1
)

// maxWindowDuration bounds a recurring window's duration.
const maxWindowDuration = 366 * 24 * time.Hour

// maxDSTShift bounds how much a wall-clock duration can exceed the same
// duration in real time (a DST change; two hours covers every zone).
const maxDSTShift = 2 * time.Hour

// maxOccurrences bounds how many occurrences one query walks.
const maxOccurrences = 1 << 20

// recurrence is a parsed, validated RecurringWindow.
type recurrence struct {
	rule     *rrule.RRule // every DTSTART-derived default explicit; starts at origin
	freq     rrule.Frequency
	origin   time.Time // DTSTART, or the anchor, in loc
	loc      *time.Location
	duration time.Duration
	reason   string
	label    string // field path for messages, such as recurring[0]
	rebase   bool   // false when COUNT makes occurrences depend on the origin
	interval int64
	wkst     int // rrule weekday of WKST, Monday = 0
}

// loadZone loads an IANA time zone; empty means UTC. "Local" is refused: it is
// whatever zone the host is in, which would make results depend on the host.
func loadZone(name string, path *field.Path) (*time.Location, *field.Error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, field.Invalid(path, name, "the host's zone is not allowed: name an IANA time zone such as Europe/Berlin, or UTC")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, field.Invalid(path, name, "is not a known IANA time zone: name one such as Europe/Berlin, America/New_York or UTC")
	}
	return loc, nil
}

// parseRecurrences parses the windows of the list field called name under
// path, each labelled name[i] for messages.
func parseRecurrences(ws []v1alpha1.RecurringWindow, loc *time.Location, path *field.Path, name string) ([]*recurrence, field.ErrorList) {
	var out []*recurrence
	var errs field.ErrorList
	for i, w := range ws {
		r, rerrs := parseRecurrence(w, loc, path.Child(name).Index(i))
		if len(rerrs) > 0 {
			errs = append(errs, rerrs...)
			continue
		}
		r.label = fmt.Sprintf("%s[%d]", name, i)
		out = append(out, r)
	}
	return out, errs
}

// parseRecurrence parses and validates one RecurringWindow at path.
func parseRecurrence(w v1alpha1.RecurringWindow, loc *time.Location, path *field.Path) (*recurrence, field.ErrorList) {
	var errs field.ErrorList
	rrPath, durPath := path.Child("rrule"), path.Child("duration")
	example := fmt.Sprintf("write an RFC 5545 rule such as FREQ=WEEKLY;BYDAY=FR;BYHOUR=16, optionally after a line DTSTART;TZID=%s:20240105T160000", loc)

	d := w.Duration.Duration
	switch {
	case d <= 0:
		errs = append(errs, field.Invalid(durPath, w.Duration.Duration.String(), "must be positive, such as 64h"))
	case d > maxWindowDuration:
		errs = append(errs, field.Invalid(durPath, w.Duration.Duration.String(), "must be at most 8784h (366 days): use an absolute window for longer periods"))
	}

	text, lineErr := normalizeRule(w.RRule)
	if lineErr != "" {
		return nil, append(errs, field.Invalid(rrPath, w.RRule, lineErr+": "+example))
	}
	opt, err := rrule.StrToROptionInLocation(text, loc)
	if err != nil {
		return nil, append(errs, field.Invalid(rrPath, w.RRule, fmt.Sprintf("does not parse (%v): %s", err, example)))
	}

	r := &recurrence{loc: loc, duration: d, reason: w.Reason, rebase: true}
	if opt.Dtstart.IsZero() {
		if opt.Count > 0 {
			errs = append(errs, field.Invalid(rrPath, w.RRule, "COUNT needs a DTSTART line to count from (without one the rule is anchored at 2001-01-01): add a line such as DTSTART;TZID="+loc.String()+":20240105T160000 before the rule, or use UNTIL instead of COUNT"))
		}
		r.origin = time.Date(anchorYear, anchorMonth, anchorDay, 0, 0, 0, 0, loc)
	} else {
		if zone := opt.Dtstart.Location().String(); zone != loc.String() && zone != "UTC" {
			errs = append(errs, field.Invalid(rrPath, w.RRule, fmt.Sprintf("DTSTART is in time zone %s but the gate's timeZone is %s: drop the TZID (a DTSTART without one is read in timeZone) or change timeZone", zone, loc)))
		}
		r.origin = opt.Dtstart.In(loc)
		r.rebase = opt.Count == 0
	}
	explicitDefaults(opt, r.origin)
	opt.Dtstart = r.origin
	rule, err := rrule.NewRRule(*opt)
	if err != nil {
		errs = append(errs, field.Invalid(rrPath, w.RRule, fmt.Sprintf("is out of range (%v): %s", err, example)))
	}
	if msg := neverOccurs(opt); msg != "" {
		errs = append(errs, field.Invalid(rrPath, w.RRule, msg))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	r.rule = rule
	r.freq = opt.Freq
	r.interval = int64(max(opt.Interval, 1))
	r.wkst = opt.Wkst.Day()
	// A rule without any occurrence is a mistake (and the library searches
	// until the year 9999 for one, on every query). neverOccurs catches the
	// usual cases cheaply; this catches the rest, such as BYSETPOS=6 with
	// BYDAY=MO, and rules whose UNTIL precedes their start.
	if _, ok := r.nextStart(r.origin.Add(-time.Second)); !ok {
		return nil, field.ErrorList{field.Invalid(rrPath, w.RRule, "never occurs: check UNTIL and the BY* parts against each other")}
	}
	return r, nil
}

// normalizeRule accepts CRLF line ends, blank lines and lower case in the
// RRULE line, and checks the line structure rrule-go expects: at most a
// DTSTART line followed by the rule. It returns a problem description or "".
func normalizeRule(s string) (string, string) {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	switch len(lines) {
	case 0:
		return "", "is empty"
	case 1:
		return strings.ToUpper(lines[0]), ""
	case 2:
		if !strings.HasPrefix(strings.ToUpper(lines[0]), "DTSTART") {
			return "", "has two lines but the first is not DTSTART"
		}
		return lines[0] + "\n" + strings.ToUpper(lines[1]), ""
	}
	return "", "has more than two lines (allowed: an optional DTSTART line, then the RRULE)"
}

// explicitDefaults writes into opt the values RFC 5545 (and rrule-go, which
// follows python-dateutil) would take from DTSTART, so that the rule can be
// restarted at a later period without changing its occurrences.
func explicitDefaults(opt *rrule.ROption, origin time.Time) {
	if len(opt.Byweekno) == 0 && len(opt.Byyearday) == 0 && len(opt.Bymonthday) == 0 &&
		len(opt.Byweekday) == 0 && len(opt.Byeaster) == 0 {
		switch opt.Freq {
		case rrule.YEARLY:
			if len(opt.Bymonth) == 0 {
				opt.Bymonth = []int{int(origin.Month())}
			}
			opt.Bymonthday = []int{origin.Day()}
		case rrule.MONTHLY:
			opt.Bymonthday = []int{origin.Day()}
		case rrule.WEEKLY:
			opt.Byweekday = []rrule.Weekday{rruleWeekday(origin.Weekday())}
		}
	}
	if len(opt.Byhour) == 0 && opt.Freq < rrule.HOURLY {
		opt.Byhour = []int{origin.Hour()}
	}
	if len(opt.Byminute) == 0 && opt.Freq < rrule.MINUTELY {
		opt.Byminute = []int{origin.Minute()}
	}
	if len(opt.Bysecond) == 0 && opt.Freq < rrule.SECONDLY {
		opt.Bysecond = []int{origin.Second()}
	}
}

func rruleWeekday(d time.Weekday) rrule.Weekday {
	return [...]rrule.Weekday{rrule.SU, rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA}[d]
}

// neverOccurs catches the common rules that have no occurrence at all, such as
// February 30th. rrule-go would search for one until the year 9999, which
// takes seconds; better to refuse the rule up front.
func neverOccurs(opt *rrule.ROption) string {
	if len(opt.Bymonthday) == 0 || len(opt.Byyearday) > 0 || len(opt.Byweekno) > 0 || len(opt.Byeaster) > 0 {
		return ""
	}
	months := opt.Bymonth
	if len(months) == 0 {
		months = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	}
	longest := 0
	for _, m := range months {
		longest = max(longest, [...]int{31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[(m-1+12)%12])
	}
	for _, md := range opt.Bymonthday {
		if md <= longest && -md <= longest {
			return ""
		}
	}
	return fmt.Sprintf("never occurs: no month in BYMONTH has the days in BYMONTHDAY (the longest has %d days)", longest)
}

// ruleFrom returns the rule restarted at the latest period start that lies at
// least maxDSTShift before from and an INTERVAL multiple of periods after the
// origin (or at the origin itself). The margin catches occurrences whose wall
// clock time precedes the restart but that a DST gap pushed past it.
func (r *recurrence) ruleFrom(from time.Time) *rrule.RRule {
	// A copy of the validated rule, rebuilt with another DTSTART; the copy
	// shares only read-only option slices with the template.
	rule := *r.rule
	rule.DTStart(r.startFor(from.Add(-maxDSTShift)))
	return &rule
}

func (r *recurrence) startFor(from time.Time) time.Time {
	if !r.rebase || !from.After(r.origin) {
		return r.origin
	}
	freq := r.freq
	oIdx := periodIndex(r.origin, freq, r.wkst)
	k := floorDiv(periodIndex(from.In(r.loc), freq, r.wkst)-oIdx, r.interval) * r.interval
	// A period that starts in a DST gap or in a repeated hour may not map
	// back to the same wall clock; step back whole intervals until one does.
	for tries := 0; tries < 4 && k > 0; tries++ {
		if s, ok := periodStart(oIdx+k, freq, r.wkst, r.loc); ok && !s.After(from) && s.After(r.origin) {
			return s
		}
		k -= r.interval
	}
	return r.origin
}

// The loops below do not stop at the first occurrence past the bound: a rule
// whose wall-clock time falls into a DST gap (02:15 on the night clocks jump
// from 02:00 to 03:00) yields an instant shifted forward by the gap, out of
// order with its neighbours. Looking maxDSTShift further covers that.

// latestStart returns the latest occurrence s with after < s <= upTo.
func (r *recurrence) latestStart(after, upTo time.Time) (time.Time, bool) {
	next := r.ruleFrom(after).Iterator()
	stop := upTo.Add(maxDSTShift)
	var last time.Time
	found := false
	for range maxOccurrences {
		v, ok := next()
		if !ok || v.After(stop) {
			break
		}
		if v.After(after) && !v.After(upTo) && (!found || v.After(last)) {
			last, found = v, true
		}
	}
	return last, found
}

// nextStart returns the first occurrence after t.
func (r *recurrence) nextStart(t time.Time) (time.Time, bool) {
	next := r.ruleFrom(t).Iterator()
	var first time.Time
	found := false
	for range maxOccurrences {
		v, ok := next()
		if !ok || found && v.After(first.Add(maxDSTShift)) {
			break
		}
		if v.After(t) && (!found || v.Before(first)) {
			first, found = v, true
		}
	}
	return first, found
}

// covering returns the window of this rule that contains t, if any: the one
// that started last, which (durations being equal) also ends last.
func (r *recurrence) covering(t time.Time) (start, end time.Time, ok bool) {
	s, found := r.latestStart(t.Add(-r.duration-maxDSTShift), t)
	if !found {
		return time.Time{}, time.Time{}, false
	}
	e := r.end(s)
	if !e.After(t) {
		return time.Time{}, time.Time{}, false
	}
	return s, e, true
}

// end is start plus the duration on the wall clock of the rule's zone.
func (r *recurrence) end(start time.Time) time.Time {
	return addWallClock(start, r.duration, r.loc)
}

// addWallClock adds d to t as a person reading a clock in loc would: across a
// DST change the result keeps the wall-clock distance, not the real one. When
// that would not move forward (a time in a repeated hour) it falls back to
// real time.
func addWallClock(t time.Time, d time.Duration, loc *time.Location) time.Time {
	lt := t.In(loc)
	y, m, day := lt.Date()
	h, mi, s := lt.Clock()
	e := time.Date(y, m, day, h, mi, s, lt.Nanosecond()+int(d), loc)
	if !e.After(t) {
		return t.Add(d)
	}
	return e
}

// periodIndex numbers the rule periods (years, months, weeks starting on
// wkst, days, hours, minutes, seconds) of wall-clock time t consecutively.
func periodIndex(t time.Time, freq rrule.Frequency, wkst int) int64 {
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	day := dayNumber(y, m, d)
	switch freq {
	case rrule.YEARLY:
		return int64(y)
	case rrule.MONTHLY:
		return int64(y)*12 + int64(m) - 1
	case rrule.WEEKLY:
		weekStart := day - floorMod(int64(mondayBased(t.Weekday())-wkst), 7)
		return floorDiv(weekStart, 7)
	case rrule.DAILY:
		return day
	case rrule.HOURLY:
		return day*24 + int64(h)
	case rrule.MINUTELY:
		return (day*24+int64(h))*60 + int64(mi)
	}
	return ((day*24+int64(h))*60+int64(mi))*60 + int64(s)
}

// periodStart is the inverse of periodIndex: the wall-clock start of period
// idx in loc. ok is false when that wall-clock time does not exist in loc or
// maps to another one (DST).
func periodStart(idx int64, freq rrule.Frequency, wkst int, loc *time.Location) (time.Time, bool) {
	var y int
	var m time.Month
	var d, h, mi, s int
	switch freq {
	case rrule.YEARLY:
		y, m, d = int(idx), time.January, 1
	case rrule.MONTHLY:
		y, m, d = int(floorDiv(idx, 12)), time.Month(floorMod(idx, 12)+1), 1
	case rrule.WEEKLY:
		// Days that start a week on wkst are all congruent modulo 7; day 0
		// (1970-01-01) was a Thursday, weekday 3 counted from Monday.
		y, m, d = dateOfDay(idx*7 + floorMod(int64(wkst-3), 7))
	case rrule.DAILY:
		y, m, d = dateOfDay(idx)
	case rrule.HOURLY:
		y, m, d = dateOfDay(floorDiv(idx, 24))
		h = int(floorMod(idx, 24))
	case rrule.MINUTELY:
		y, m, d = dateOfDay(floorDiv(idx, 24*60))
		rem := floorMod(idx, 24*60)
		h, mi = int(rem/60), int(rem%60)
	default:
		y, m, d = dateOfDay(floorDiv(idx, 24*60*60))
		rem := floorMod(idx, 24*60*60)
		h, mi, s = int(rem/3600), int(rem/60%60), int(rem%60)
	}
	t := time.Date(y, m, d, h, mi, s, 0, loc)
	ty, tm, td := t.Date()
	th, tmi, ts := t.Clock()
	return t, ty == y && tm == m && td == d && th == h && tmi == mi && ts == s
}

// dayNumber counts days since 1970-01-01 on the proleptic Gregorian calendar.
func dayNumber(y int, m time.Month, d int) int64 {
	return floorDiv(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix(), 86400)
}

func dateOfDay(day int64) (int, time.Month, int) {
	return time.Unix(day*86400, 0).UTC().Date()
}

// mondayBased numbers weekdays from Monday = 0, as rrule-go does.
func mondayBased(d time.Weekday) int { return (int(d) + 6) % 7 }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
