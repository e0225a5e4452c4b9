package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeployTaskPhase is where a deploy task is in its life.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;RolledBack;TimedOut;Cancelled
type DeployTaskPhase string

const (
	DeployTaskPending    DeployTaskPhase = "Pending"
	DeployTaskRunning    DeployTaskPhase = "Running"
	DeployTaskSucceeded  DeployTaskPhase = "Succeeded"
	DeployTaskFailed     DeployTaskPhase = "Failed"
	DeployTaskRolledBack DeployTaskPhase = "RolledBack"
	DeployTaskTimedOut   DeployTaskPhase = "TimedOut"
	DeployTaskCancelled  DeployTaskPhase = "Cancelled"
)

// IsTerminal reports whether a task in this phase is finished for good.
func (p DeployTaskPhase) IsTerminal() bool {
	switch p {
	case DeployTaskSucceeded, DeployTaskFailed, DeployTaskRolledBack, DeployTaskTimedOut, DeployTaskCancelled:
		return true
	}
	return false
}

// DeployAction says what a deploy task does.
// +kubebuilder:validation:Enum=Deploy;Rollback
type DeployAction string

const (
	DeployActionDeploy   DeployAction = "Deploy"
	DeployActionRollback DeployAction = "Rollback"
)

// DeployTaskSpec is one deployment of a release to one target. Immutable.
type DeployTaskSpec struct {
	// promotion the task belongs to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Promotion string `json:"promotion"`

	// target to deploy to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Target string `json:"target"`

	// release to deploy.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Release string `json:"release"`

	// version of the release, for the sticker.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// components and the digests to run, copied from the release.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Components []ComponentDigest `json:"components"`

	// previous is what ran before, used to roll back on failure.
	// +optional
	Previous *VersionSticker `json:"previous,omitempty"`

	// action: Deploy or Rollback. Defaults to Deploy.
	// +optional
	// +kubebuilder:default=Deploy
	Action DeployAction `json:"action,omitempty"`

	// batch is the rollout step of the strategy this task belongs to, from 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Batch int32 `json:"batch,omitempty"`

	// timeout after which an unfinished task is TimedOut.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// DeployTaskStatus is reported by the agent or driver that runs the task.
type DeployTaskStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the task succeeded), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase of the task.
	// +optional
	Phase DeployTaskPhase `json:"phase,omitempty"`

	// message about the last step, for people.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// observed are the digests seen running after the task.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Observed []ComponentDigest `json:"observed,omitempty"`

	// attempts counts how often the task was started.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// startedAt is when the task started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// finishedAt is when the task reached a terminal phase.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
}

// DeployTask is the deployment of one promotion's release to one target. The
// promotion reconciler creates it; the agent serving the target runs it and
// reports its result, unless the server times it out first. Once its phase
// is terminal it never changes: whichever result was stored first stands.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dt,categories=stella
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Succeeded', 'Failed', 'RolledBack', 'TimedOut', 'Cancelled']) || (has(self.status) && has(self.status.phase) && self.status.phase == oldSelf.status.phase)",fieldPath=".status.phase",reason=FieldValueForbidden,message="the task ended (Succeeded, Failed, RolledBack, TimedOut or Cancelled) and its first result stands; a late result is not recorded, and deploying again takes a new promotion"
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.spec.release`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeployTask struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to deploy where. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
	Spec DeployTaskSpec `json:"spec"`

	// status is reported by whoever runs the task.
	// +optional
	Status DeployTaskStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DeployTaskList is a list of DeployTasks.
type DeployTaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeployTask `json:"items"`
}

func init() {
	register(&DeployTask{}, &DeployTaskList{})
}
