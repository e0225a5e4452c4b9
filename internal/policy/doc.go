// Package policy evaluates the CUE programs of `policy` gates.
//
// A Gate's spec.policy.source is a CUE program (at most MaxSourceBytes). It
// reads the promotion's frozen inputs as `input` and defines two top-level
// fields:
//
//	allow:   bool        // true lets the promotion through this gate
//	reasons: [...string] // why; shown to humans and recorded as evidence
//
// The program may constrain `input` (types, regular expressions, required
// fields); those constraints are its input schema. It need not declare
// `input` at all: the engine declares `input: _` for it. Imports are limited
// to CUE's standard library, which has no clock, randomness or I/O, and file
// embedding (@embed) is refused, so an evaluation depends on nothing but the
// source and the input, and a policy cannot read the server's files.
//
// # Lifecycle
//
// Compile turns the source into a Program once (the Gate reconciler caches
// one per Gate generation). It fails, with CUE's message and
// policy.cue:line:column, when the source does not compile, lacks allow or
// reasons, or types them as anything but bool and a list of strings; the Gate
// is then Stalled with that message. Program.Digest, "sha256:<hex>" of the
// source bytes, is the policy digest evidence records.
//
// # The input document
//
// Program.Evaluate takes an Input and hands the policy its JSON encoding:
//
//	input: {
//		release: {
//			name:    string
//			version: string // "2.3.1", "2.4.0-rc1"
//			components: [...{
//				name:   string
//				image:  string // "registry/repo@sha256:<hex>"
//				digest: string // "sha256:<hex>"
//				role:   "primary" | "sidecar" | "init" | "migration"
//			}]
//			source: {repository: string, commit: string, buildURL: string}
//		}
//		environment: {name: string, order: int}
//		promotion: {name: string, requestedBy: string, reason: string}
//		approvals: [...{
//			approver: string
//			groups: [...string]
//			decision: "approve" | "reject"
//		}]
//		scanReports: [...{
//			image:       string
//			maxSeverity: "None" | "Unknown" | "Low" | "Medium" | "High" | "Critical"
//			counts: {critical: int, high: int, medium: int, low: int, unknown: int}
//		}]
//		clock: {now: string} // RFC 3339, UTC, whole seconds: "2026-01-02T15:04:05Z"
//	}
//
// Every field is always present ("" or 0 or [] when there is nothing to
// say), there are no maps, and timestamps are strings, so the encoding of an
// Input is fixed. List order is the caller's and is part of the input.
//
// # Semantics: deny, or error
//
// Evaluation fails closed: nothing but a concrete `allow: true` allows.
// Evaluate distinguishes the input being refused from the policy being
// broken, because the first is an answer about this promotion and the second
// is something the Gate's owner must fix:
//
//   - The input does not satisfy the policy's `input` schema (a regular
//     expression that does not match, a type that differs, a field the schema
//     requires and the document lacks, a closed definition meeting extra
//     fields): a deny with Code CodeInputRejected, one reason per CUE error,
//     each prefixed "input rejected by the policy schema: ". Never an allow
//     and never a Go error: a promotion that does not fit the contract is a
//     "no", not an outage.
//   - allow or reasons is not concrete for this input (CUE calls the value
//     incomplete: it depends on something that has no value, such as a
//     misspelt field of input, an abstract helper like `_limit: int`, a key
//     missing from a lookup table, or `true | false`): a deny with Code
//     CodeUndecided and a reason "policy did not decide: ...". A policy that
//     cannot decide has not allowed.
//   - allow is false: a deny with Code CodeDenied and the policy's reasons
//     (or "policy denied without giving a reason" if it gave none, so every
//     deny explains itself).
//   - allow is true: an allow with Code CodeAllowed and the policy's reasons,
//     if any, as notes.
//   - A conflict outside `input` (the policy contradicts itself or its output
//     types, e.g. reasons holds a struct, allow compares an int with a
//     string, an index is out of range): a Go error carrying CUE's message and
//     position. This is a defect in the policy, not an answer; the caller
//     must treat it as a deny too and surface it on the Gate. CUE decides the
//     split: an incomplete value is undecided, any other error is a failure.
//     Policies that index into lists should check len first.
//
// Reasons are sorted (by bytes) and deduplicated, and never nil.
//
// # Determinism
//
// The same source and the same Input give the same Decision, byte for byte,
// in any process: the input encoding is fixed, the evaluator version is
// pinned (CUE_EXPERIMENT cannot change it), CUE's standard library is
// hermetic, reasons are sorted, and error texts carry only positions in the
// policy source. The texts of schema and undecided reasons come from CUE, and
// an upgrade of the CUE module can change them (or, rarely, an evaluation
// itself), so a replay is exact only on the same CUE version: evidence should
// record it next to the policy digest.
//
// # Sandbox
//
// Compile and Evaluate run in the calling process, with no bound on time or
// memory: CUE has no cancellation, and a goroutine cannot be stopped. A
// server runs policies written by its tenants through a Sandbox instead,
// which compiles and evaluates them in worker processes with a time budget
// (the worker is killed) and a memory budget (RLIMIT_AS: the worker dies),
// replaces a worker that is gone, and remembers a policy that exceeded a
// budget (a *BudgetError, whose message is deterministic) until its source
// changes. A worker is the running binary executed again with
// STELLA_POLICY_WORKER set; this package's initialisation then serves
// length-prefixed JSON requests on stdin and stdout.
//
// # Concurrency
//
// A Program may be shared: Evaluate may be called from several goroutines.
// Evaluations of one Program take turns (see Program); Programs are
// independent.
package policy
