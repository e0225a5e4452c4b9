package gates

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Gate types, spelled as the GateSpec fields' JSON names. They are what
// GateStatus.type and GateEvaluation.type show.
const (
	TypeApproval        = "approval"
	TypeFreezeWindow    = "freezeWindow"
	TypeSoak            = "soak"
	TypeSecurityVerdict = "securityVerdict"
	TypePolicy          = "policy"
	TypeSchedule        = "schedule"
	TypeDependency      = "dependency"
)

// Inputs is everything an evaluation may look at, frozen by the caller. The
// evaluators read nothing else: no clock, no API, no environment variables.
// Slices rather than maps keep the inputs easy to serialize canonically for
// the determinism hash; the evaluators look objects up by name and never
// depend on the order of a slice.
type Inputs struct {
	// Now is the frozen clock of the evaluation. Required.
	Now time.Time

	// Promotion being evaluated: its name, UID, spec.release,
	// spec.requestedBy, status.startedAt and creation time are read.
	Promotion *v1alpha1.Promotion

	// Release being promoted (the one spec.release names). Approval gates
	// compare its name and images with those each approval is bound to.
	Release *v1alpha1.Release

	// Releases are other releases a dependency gate with a component looks
	// at: the release the gate names and the one its environment currently
	// runs. Other gates do not need them.
	Releases []v1alpha1.Release

	// Environments are the environments soak and dependency gates name.
	Environments []v1alpha1.Environment

	// Approvals of this promotion.
	Approvals []v1alpha1.Approval

	// ScanReports of the release's images. Reports of other images are
	// ignored; when several reports cover one image digest, the most recently
	// scanned counts.
	ScanReports []v1alpha1.ScanReport
}

// Outcome is the verdict of one gate.
type Outcome struct {
	// Type of the gate, such as freezeWindow.
	Type string
	// Result is Pass, Fail or Pending.
	Result v1alpha1.GateResult
	// ReasonCodes are sorted, without duplicates, and empty on Pass.
	ReasonCodes []string
	// Message explains the result to a person.
	Message string
	// RetryAt is when a Pending result changes by itself; see the package
	// documentation.
	RetryAt *time.Time
	// Approvals says, for approval gates, which approvals counted and why the
	// others were ignored, in the order they were considered.
	Approvals []ApprovalVerdict
}

// maxMessageLen is GateEvaluation.message's MaxLength.
const maxMessageLen = 1024

// maxReasonCodes is GateEvaluation.reasonCodes' MaxItems.
const maxReasonCodes = 32

// Evaluation converts the outcome into the entry Promotion status records for
// the gate called name. The message is cut to the API's length bound, and
// RetryAt is rounded up to a whole second, because metav1.Time keeps only
// seconds and a requeue that comes early would find the gate unchanged.
func (o Outcome) Evaluation(name string) v1alpha1.GateEvaluation {
	ev := v1alpha1.GateEvaluation{
		Name:    name,
		Type:    o.Type,
		Result:  o.Result,
		Message: Truncate(o.Message, maxMessageLen),
	}
	if len(o.ReasonCodes) > 0 {
		ev.ReasonCodes = slices.Clone(o.ReasonCodes[:min(len(o.ReasonCodes), maxReasonCodes)])
	}
	if o.RetryAt != nil {
		t := o.RetryAt.UTC()
		if r := t.Truncate(time.Second); !r.Equal(t) {
			t = r.Add(time.Second)
		}
		mt := metav1.NewTime(t)
		ev.RetryAt = &mt
	}
	return ev
}

// Evaluate evaluates one gate against frozen inputs. It never panics on
// missing inputs or bad configuration: those give Fail with gate.input-missing
// or gate.invalid. A policy gate gives Fail with gate.unsupported: callers
// evaluate policy gates with internal/policy and must not send them here.
func Evaluate(gate *v1alpha1.Gate, in Inputs) Outcome {
	if gate == nil {
		return fail("", "no gate given", ReasonInputMissing)
	}
	typ, err := TypeOf(&gate.Spec)
	if err != nil {
		return fail("", err.Error(), ReasonUnsupported)
	}
	if in.Now.IsZero() {
		return fail(typ, "no evaluation time given", ReasonInputMissing)
	}
	spec := &gate.Spec
	switch typ {
	case TypeApproval:
		return EvaluateApproval(spec.Approval, in)
	case TypeFreezeWindow:
		return EvaluateFreezeWindow(spec.FreezeWindow, in)
	case TypeSoak:
		return EvaluateSoak(spec.Soak, in)
	case TypeSecurityVerdict:
		return EvaluateSecurityVerdict(spec.SecurityVerdict, in)
	case TypeSchedule:
		return EvaluateSchedule(spec.Schedule, in)
	case TypeDependency:
		return EvaluateDependency(spec.Dependency, in)
	}
	return fail(typ, "policy gates are evaluated by internal/policy, not by internal/gates", ReasonUnsupported)
}

// TypeOf returns the one gate type that spec sets, or an error when it sets
// none or several (admission rejects both; this guards callers that build
// specs in code).
func TypeOf(spec *v1alpha1.GateSpec) (string, error) {
	var set []string
	add := func(isSet bool, typ string) {
		if isSet {
			set = append(set, typ)
		}
	}
	add(spec.Approval != nil, TypeApproval)
	add(spec.FreezeWindow != nil, TypeFreezeWindow)
	add(spec.Soak != nil, TypeSoak)
	add(spec.SecurityVerdict != nil, TypeSecurityVerdict)
	add(spec.Policy != nil, TypePolicy)
	add(spec.Schedule != nil, TypeSchedule)
	add(spec.Dependency != nil, TypeDependency)
	switch len(set) {
	case 1:
		return set[0], nil
	case 0:
		return "", fmt.Errorf("spec: no gate type is set: set exactly one of approval, freezeWindow, soak, securityVerdict, policy, schedule or dependency")
	}
	return "", fmt.Errorf("spec: %s and %s are set: set exactly one gate type", strings.Join(set[:len(set)-1], ", "), set[len(set)-1])
}

// Validate checks what admission cannot: that RRULEs parse, time zones load,
// durations are positive and enumerations are known. The error names each
// offending field by its path (spec.freezeWindow.recurring[0].rrule) and says
// how to fix it; the Gate reconciler puts it in the Stalled condition. Policy
// gates are checked by internal/policy; Validate accepts any policy source.
func Validate(gate *v1alpha1.Gate) error {
	if gate == nil {
		return fmt.Errorf("no gate given")
	}
	typ, err := TypeOf(&gate.Spec)
	if err != nil {
		return err
	}
	spec := &gate.Spec
	base := field.NewPath("spec", typ)
	var errs field.ErrorList
	switch typ {
	case TypeApproval:
		errs = validateApproval(spec.Approval, base)
	case TypeFreezeWindow:
		_, errs = compileFreeze(spec.FreezeWindow, base)
	case TypeSoak:
		errs = validateSoak(spec.Soak, base)
	case TypeSecurityVerdict:
		_, errs = compileSecurity(spec.SecurityVerdict, base)
	case TypeSchedule:
		_, errs = compileSchedule(spec.Schedule, base)
	case TypeDependency:
		errs = validateDependency(spec.Dependency, base)
	}
	return errs.ToAggregate()
}

// IsTimeBased reports whether the gate opens and closes with the clock alone
// (freezeWindow and schedule), so that its Gate status shows closed and
// nextOpenAt.
func IsTimeBased(spec *v1alpha1.GateSpec) bool {
	typ, err := TypeOf(spec)
	return err == nil && (typ == TypeFreezeWindow || typ == TypeSchedule)
}

// ClosedAt says whether a time-based gate blocks promotions at now and, if it
// does, when it next opens. nextOpen is nil when the gate is open, or when no
// opening was found within the search horizon (a freeze that never ends, a
// schedule whose windows ended). Gates that are not time-based are never
// closed by the clock: ClosedAt returns false, nil, nil for them. An invalid
// configuration returns Validate's error.
func ClosedAt(gate *v1alpha1.Gate, now time.Time) (closed bool, nextOpen *time.Time, err error) {
	if gate == nil {
		return false, nil, fmt.Errorf("no gate given")
	}
	typ, err := TypeOf(&gate.Spec)
	if err != nil {
		return false, nil, err
	}
	base := field.NewPath("spec", typ)
	switch typ {
	case TypeFreezeWindow:
		cal, errs := compileFreeze(gate.Spec.FreezeWindow, base)
		if len(errs) > 0 {
			return false, nil, errs.ToAggregate()
		}
		st := cal.stateAt(now)
		return st.closed, st.opensAt, nil
	case TypeSchedule:
		cal, errs := compileSchedule(gate.Spec.Schedule, base)
		if len(errs) > 0 {
			return false, nil, errs.ToAggregate()
		}
		st := cal.stateAt(now)
		return !st.inside, st.nextStart, nil
	}
	return false, nil, nil
}

func pass(typ, msg string) Outcome {
	return Outcome{Type: typ, Result: v1alpha1.GatePass, Message: msg}
}

func pending(typ, msg string, retryAt *time.Time, codes ...string) Outcome {
	return Outcome{Type: typ, Result: v1alpha1.GatePending, Message: msg, RetryAt: retryAt, ReasonCodes: sortedCodes(codes)}
}

func fail(typ, msg string, codes ...string) Outcome {
	return Outcome{Type: typ, Result: v1alpha1.GateFail, Message: msg, ReasonCodes: sortedCodes(codes)}
}

// invalid is the outcome of a gate whose configuration does not validate.
func invalid(typ string, errs field.ErrorList) Outcome {
	return fail(typ, "invalid gate configuration: "+errs.ToAggregate().Error(), ReasonInvalid)
}

// sortedCodes returns codes sorted and without duplicates, or nil.
func sortedCodes(codes []string) []string {
	if len(codes) == 0 {
		return nil
	}
	out := slices.Clone(codes)
	slices.Sort(out)
	return slices.Compact(out)
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// timePtr returns a pointer to a copy of t.
func timePtr(t time.Time) *time.Time { return &t }

// releaseName is the name of the release being promoted.
func releaseName(in Inputs) string {
	if in.Release != nil && in.Release.Name != "" {
		return in.Release.Name
	}
	if in.Promotion != nil {
		return in.Promotion.Spec.Release
	}
	return ""
}

// findEnvironment looks an environment up by name.
func findEnvironment(envs []v1alpha1.Environment, name string) *v1alpha1.Environment {
	for i := range envs {
		if envs[i].Name == name {
			return &envs[i]
		}
	}
	return nil
}

// findRelease looks a release up by name, the release being promoted first.
func findRelease(in Inputs, name string) *v1alpha1.Release {
	if in.Release != nil && in.Release.Name == name {
		return in.Release
	}
	for i := range in.Releases {
		if in.Releases[i].Name == name {
			return &in.Releases[i]
		}
	}
	return nil
}

// formatTime renders an instant for messages: RFC 3339 in loc, seconds
// precision, so that messages are stable and readable in the gate's zone.
func formatTime(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format(time.RFC3339)
}
