// Package gates evaluates the gates a promotion must pass to enter an
// environment: approval, freezeWindow, soak, securityVerdict, schedule and
// dependency. (The policy gate is a CUE program; internal/policy evaluates it,
// and Evaluate answers gate.unsupported for it so that a caller that forgets
// that fails closed.)
//
// Every evaluator is a pure function of the Inputs the caller froze: it does no
// I/O, never reads the wall clock (Inputs.Now is the clock), does not depend on
// map order and returns sorted reason codes. The same inputs give the same
// Outcome, byte for byte, which is what lets a decision be replayed from its
// evidence packet.
//
// # Results
//
//   - Pass: the gate lets the promotion through. A passing gate carries no
//     reason codes.
//   - Pending: the gate may pass later. RetryAt, when set, is the instant at
//     which the result changes with no other input changing (a freeze window
//     opens, a soak completes, a scan report times out); the caller requeues
//     for exactly that moment instead of polling. When RetryAt is nil the
//     result changes only when an input changes (a new Approval, a new
//     ScanReport, an Environment's status), so the caller relies on its
//     watches.
//   - Fail: the gate rejects the promotion. Fail is final for the promotion;
//     missing, stale or invalid inputs never turn into Pass (fail closed).
//
// # Reason codes
//
// Codes are lower-case, dotted and stable; they sort. A gate that does not
// pass carries at least one code:
//
//	gate.invalid                       Fail     the gate's configuration does not validate (see Validate)
//	gate.unsupported                   Fail     no gate type is set, or the type is policy (internal/policy evaluates it)
//	gate.input-missing                 Fail     the caller did not supply an input the gate needs (a bug in the caller)
//	approval.insufficient              Pending  fewer distinct allowed approvers than spec.approval.count
//	approval.rejected                  Fail     an allowed approver rejected the promotion
//	approval.requester-cannot-approve  -        an approval by the promotion's requester was ignored (separation of duties)
//	approval.not-allowed               -        an approval by someone outside users and groups was ignored
//	approval.duplicate                 -        a second approval (or rejection) by the same approver was ignored
//	approval.approver-unknown          -        an approval without spec.approver was ignored
//	approval.other-promotion           -        an approval of another promotion was ignored
//	approval.unbound                   -        an approval without spec.promotionUID (bound to no promotion) was ignored
//	approval.promotion-replaced        -        an approval of an earlier promotion of the same name (another UID) was ignored
//	approval.release-changed           -        an approval of other release images than the promotion's release pins now was ignored
//	approval.decision-unknown          -        an approval whose decision is neither approve nor reject was ignored
//	freeze.active                      Pending  a freeze window covers Now; RetryAt is when it opens
//	soak.environment-not-found         Fail     the soak environment does not exist
//	soak.not-deployed                  Fail     the release never succeeded in the soak environment
//	soak.interrupted                   Fail     the release ran there, but was replaced before it soaked long enough
//	soak.insufficient                  Pending  the release runs there but has not soaked long enough; RetryAt is when it will have
//	security.report-missing            Pending  an image of the release has no ScanReport yet (Fail once the timeout passed)
//	security.report-stale              Pending  an image's ScanReport is older than maxReportAge (Fail once the timeout passed)
//	security.timeout                   Fail     reports were still missing or stale when the timeout passed
//	security.report-truncated          Fail     a truncated report leaves the verdict unknown under fixableOnly or applyVEX=false
//	security.severity-exceeded         Fail     a counted finding is more severe than maxSeverity
//	schedule.outside-window            Pending  Now is outside every allowed window; RetryAt is the next window's start
//	schedule.no-upcoming-window        Fail     no allowed window starts after Now
//	dependency.environment-not-found   Fail     the dependency environment does not exist
//	dependency.release-not-found       Fail     the release the gate names is not among the inputs
//	dependency.component-not-found     Fail     the required release has no component of the gate's name
//	dependency.not-deployed            Pending  the environment does not run the required release (or component digest)
//	dependency.not-healthy             Pending  the environment's Ready condition is not True
//	dependency.drifted                 Pending  some of the environment's targets drifted
//	dependency.targets-unknown         Pending  some of the environment's targets were not observed recently
//
// The approval.* codes marked "-" are the reasons an individual approval was
// ignored (ApprovalVerdict.Reason); they also appear among the gate's codes
// when the gate does not pass, so that "why is this still waiting" is answered
// by the codes alone.
//
// # Time
//
// freezeWindow and schedule gates use RFC 5545 recurrence rules expanded in the
// gate's IANA time zone, with wall-clock durations; see recurrence.go for the
// anchor that rules without a DTSTART line use and why.
package gates
