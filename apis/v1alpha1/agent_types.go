package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationAgentEnrolment on an Agent is the id of the join token its host
// last joined with; the server writes it when it approves the join. It
// accepts for the Agent only certificates of that enrolment (they carry the
// group stella:enrolment:<id>), so a certificate of an earlier Agent of the
// same name, or of an earlier join, is refused.
const AnnotationAgentEnrolment = "stella-ops.org/enrolment"

// AgentSpec declares an agent that deploys to targets on its host.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.revoked) || !oldSelf.revoked || (has(self.revoked) && self.revoked)",message="spec.revoked cannot be set back to false: delete the Agent and let the host join again with a new token (stellactl agent join-token)"
type AgentSpec struct {
	// capabilities are the target types the agent can deploy to.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	Capabilities []TargetType `json:"capabilities"`

	// heartbeatGracePeriod is how long the agent may stay silent before its
	// targets turn Unknown. Defaults to 2m.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	HeartbeatGracePeriod metav1.Duration `json:"heartbeatGracePeriod,omitempty"`

	// paused stops the agent from starting new DeployTasks while true.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// revoked cuts the agent off: while true the server refuses every
	// request made with the agent's certificate and approves no new one for
	// it. It cannot be set back to false; to let the host back, delete the
	// Agent and join it again with a new token. Set by
	// `stellactl agent revoke`.
	// +optional
	Revoked bool `json:"revoked,omitempty"`
}

// AgentStatus is what the agent reported.
type AgentStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (heartbeat within the grace period), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// version of the stella-agent binary.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version,omitempty"`

	// hostname of the machine the agent runs on.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Hostname string `json:"hostname,omitempty"`

	// lastHeartbeat is when the agent last renewed its Lease.
	// +optional
	LastHeartbeat *metav1.Time `json:"lastHeartbeat,omitempty"`

	// capabilities are the target types the running agent can deploy to, as
	// it reported them: a type of spec.capabilities missing here has no
	// driver on the host (for compose, no compose CLI is installed).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	Capabilities []TargetType `json:"capabilities,omitempty"`

	// servedTargets names the Targets that point at this agent.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	ServedTargets []string `json:"servedTargets,omitempty"`
}

// Agent is a stella-agent process on a target host: it watches the
// DeployTasks of the targets it serves, deploys them and reports what runs.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=agt,categories=stella
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Heartbeat",type=date,JSONPath=`.status.lastHeartbeat`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Agent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the agent.
	// +required
	Spec AgentSpec `json:"spec"`

	// status is what the agent reported.
	// +optional
	Status AgentStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AgentList is a list of Agents.
type AgentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Agent `json:"items"`
}

func init() {
	register(&Agent{}, &AgentList{})
}
