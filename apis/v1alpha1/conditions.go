package v1alpha1

import "strings"

// Condition types shared by every Stella kind. Ready is normal-true: it is
// always present once the object was reconciled. Reconciling and Stalled are
// abnormal-true: they are present only while they are true.
const (
	// ConditionReady (normal-true) says the object is valid and its reconciler
	// has brought the world in line with its spec.
	ConditionReady = "Ready"
	// ConditionReconciling (abnormal-true) says work towards the spec is in
	// progress.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (abnormal-true) says the reconciler cannot make progress
	// without a change to the spec; its message names the field and the fix.
	ConditionStalled = "Stalled"
	// ConditionSecurityVerdict says, on an Environment, whether the release
	// it runs still passes the environment's securityVerdict gates with the
	// advisories and VEX statements known now. It is False when a new
	// advisory (or a withdrawn VEX statement) makes it fail; the reason is
	// Passed, Failed or Pending.
	ConditionSecurityVerdict = "SecurityVerdict"
	// ConditionDrifted (abnormal-true), on a Target, says something other
	// than the deployed release runs there; its agent sets it, and removes
	// it once the target runs the deployed release again.
	ConditionDrifted = "Drifted"
)

// Condition reasons, CamelCase as the Kubernetes API conventions require.
const (
	// ReasonSucceeded: the last reconcile reached the desired state.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing: the reconciler is working towards the desired state.
	ReasonProgressing = "Progressing"
	// ReasonInvalidSpec: the spec cannot be acted upon; see the message.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonDependencyNotFound: an object the spec refers to does not exist.
	ReasonDependencyNotFound = "DependencyNotFound"
	// ReasonRetrying (Ready False, with Reconciling): the last attempt
	// failed with the error in the message; the reconciler tries again.
	ReasonRetrying = "Retrying"
	// ReasonNoTargets (Ready False, with Reconciling) on a Promotion: its
	// environment selects no Targets, so it waits for one until its deploy
	// timeout passes, unless the environment sets spec.allowEmpty.
	ReasonNoTargets = "NoTargets"
	// ReasonAgentNotJoined (Ready Unknown) on a Target: the Agent that
	// serves it never reported, so what runs there is not known.
	ReasonAgentNotJoined = "AgentNotJoined"
	// ReasonAgentNotSeen (Ready Unknown) on a Target: its Agent reported
	// before but not within its heartbeat grace period.
	ReasonAgentNotSeen = "AgentNotSeen"
	// ReasonAgentRevoked (Ready False) on an Agent whose spec.revoked is
	// set: the server refuses its certificate. On its Targets (Ready
	// Unknown): what runs there is no longer known.
	ReasonAgentRevoked = "Revoked"
	// ReasonPolicyBudgetExceeded: a Gate's CUE policy ran out of its time or
	// memory budget and was stopped; the gate fails closed until its source
	// changes.
	ReasonPolicyBudgetExceeded = "PolicyBudgetExceeded"
)

// Ready reasons of an Agent. The agent itself reports Heartbeating and
// Stopped; the server says AgentSilent (and Revoked, ReasonAgentRevoked).
const (
	// ReasonHeartbeating (Ready True): the agent renews its Lease; the
	// message says which agent runs where, and what it cannot deploy to.
	ReasonHeartbeating = "Heartbeating"
	// ReasonStopped (Ready False): the agent was stopped and said so as it
	// shut down.
	ReasonStopped = "Stopped"
	// ReasonAgentSilent (Ready False): the agent's Lease was not renewed
	// within its heartbeat grace period, without a word from the agent.
	ReasonAgentSilent = "AgentSilent"
)

// Reasons an agent reports on the Targets it serves, on their Ready and
// Drifted conditions, and as the reasons of its Events about them.
const (
	// ReasonInSync (Ready True): the target has not drifted from its
	// deployed release and is not degraded; the message says what runs. The
	// same word as status.drift's DriftInSync.
	ReasonInSync = string(DriftInSync)
	// ReasonDrifted (Ready False, Drifted True; and a Warning Event):
	// something other than the deployed release runs on the target. The
	// same word as status.drift's DriftDrifted.
	ReasonDrifted = string(DriftDrifted)
	// ReasonDegraded (Ready False): the deployed release runs but is not
	// healthy. The same word as status.health's HealthDegraded.
	ReasonDegraded = string(HealthDegraded)
	// ReasonObserveFailed (Ready False): the agent could not find out what
	// runs on the target; the message says why.
	ReasonObserveFailed = "ObserveFailed"
	// ReasonReverted (Normal Event): the target drifted and the agent put
	// the deployed release back.
	ReasonReverted = "Reverted"
	// ReasonRevertFailed (Warning Event): putting the deployed release back
	// on a drifted target failed; the message has the error.
	ReasonRevertFailed = "RevertFailed"
	// ReasonResultNotRecorded (Warning Event on a DeployTask): the agent's
	// result came after the task had already ended (timed out or
	// cancelled), so the ended phase stands and the result is dropped.
	ReasonResultNotRecorded = "ResultNotRecorded"
)

// Reconciling reasons of a ScanReport, and of its Warning Events.
const (
	// ReasonScanning (Reconciling): the scanner reads the image's layers.
	ReasonScanning = "Scanning"
	// ReasonScanFailed (Reconciling, and a Warning Event): reading or
	// matching the image failed with the error in the message; the scanner
	// tries again.
	ReasonScanFailed = "ScanFailed"
	// ReasonNoAdvisories (Reconciling): the packages are listed but no
	// advisory snapshot was imported to match them against
	// (stellactl advisories import).
	ReasonNoAdvisories = "NoAdvisories"
)

// Ready reasons of a Promotion. While it waits or works (Reconciling) and
// once it ended, Ready's reason says where it stands; Succeeded ends it
// well (ReasonSucceeded), any other terminal reason with Ready False.
const (
	// ReasonQueued (Reconciling): another promotion of the environment goes
	// first; the message names it.
	ReasonQueued = "Queued"
	// ReasonAwaitingGates (Reconciling): a gate is pending (an approval, a
	// freeze window, a soak time); the message lists the reason codes.
	ReasonAwaitingGates = "AwaitingGates"
	// ReasonDeploying (Reconciling): the rollout is under way; the message
	// says which batch, how far it got and which agents it waits for.
	ReasonDeploying = "Deploying"
	// ReasonRollingBack (Reconciling): a target failed and the environment
	// rolls back on failure; the targets go back to what they ran before.
	ReasonRollingBack = "RollingBack"
	// ReasonReleaseNotFound (Stalled): spec.release names no Release.
	ReasonReleaseNotFound = "ReleaseNotFound"
	// ReasonEnvironmentNotFound (Stalled): spec.environment names no
	// Environment.
	ReasonEnvironmentNotFound = "EnvironmentNotFound"
	// ReasonTooManyTargets (Stalled): the environment selects more targets
	// than one promotion rolls out to (MaxRolloutTargets); the message says
	// how many and how to narrow the selection.
	ReasonTooManyTargets = "TooManyTargets"
	// ReasonCancelled (terminal): the stella-ops.org/cancel annotation asked
	// for it, by hand or because a newer auto-promotion superseded it.
	ReasonCancelled = "Cancelled"
	// ReasonRejected (terminal): the gates denied the promotion, or refused
	// its inputs.
	ReasonRejected = "Rejected"
	// ReasonFailed (terminal): a target failed or timed out, or its rollback
	// did, or the environment selected no targets in time.
	ReasonFailed = "Failed"
	// ReasonRolledBack (terminal): a target failed and every changed target
	// was returned to what it ran before.
	ReasonRolledBack = "RolledBack"
)

// LocalObjectReference names another object in the same namespace.
type LocalObjectReference struct {
	// name of the referenced object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// SecretKeyReference names one key of a Secret in the same namespace.
type SecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key within the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// ComponentDigest is one component of a release pinned to an image digest.
type ComponentDigest struct {
	// name of the component, as in the Release.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// image is the component's image pinned by digest: repository@sha256:<64 hex>.
	// +required
	Image ImageDigestRef `json:"image"`
}

// ImageDigestRef is an OCI image reference pinned by digest, such as
// registry.example.com/shop/api@sha256:<64 lowercase hex>. Tags are resolved to
// digests once, when a release is created, and never again.
// +kubebuilder:validation:MinLength=72
// +kubebuilder:validation:MaxLength=512
// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9][a-zA-Z0-9.-]*(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*@sha256:[a-f0-9]{64}$')",message="must be an image pinned by digest, repository@sha256:<64 lowercase hex>; a tag is not allowed here (stellactl release create resolves tags to digests)"
type ImageDigestRef string

// Digest is the sha256:<hex> part of the reference, which identifies the
// image whatever repository names it; the whole reference when it has no
// digest (admission refuses those), which then matches no other digest.
func (r ImageDigestRef) Digest() string {
	s := string(r)
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Digest is a content digest in the form sha256:<64 lowercase hex>.
// +kubebuilder:validation:MaxLength=71
// +kubebuilder:validation:XValidation:rule="self.matches('^sha256:[a-f0-9]{64}$')",message="must be a digest of the form sha256:<64 lowercase hex>"
type Digest string
