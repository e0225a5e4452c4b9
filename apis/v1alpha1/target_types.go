package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TargetType names the runtime a target deploys to.
// +kubebuilder:validation:Enum=docker;compose;ecs;nomad;ssh
type TargetType string

const (
	// TargetTypeDocker runs containers on a Docker Engine through an agent.
	TargetTypeDocker TargetType = "docker"
	// TargetTypeCompose runs a Docker Compose project through an agent.
	TargetTypeCompose TargetType = "compose"
	// TargetTypeECS updates an AWS ECS service.
	TargetTypeECS TargetType = "ecs"
	// TargetTypeNomad registers a Nomad job.
	TargetTypeNomad TargetType = "nomad"
	// TargetTypeSSH runs the Docker or Compose steps over SSH, without an agent.
	TargetTypeSSH TargetType = "ssh"
)

// DriftState says whether a target runs what was deployed to it.
// +kubebuilder:validation:Enum=InSync;Drifted;Unknown
type DriftState string

const (
	// DriftInSync: the observed digests are the deployed ones.
	DriftInSync DriftState = "InSync"
	// DriftDrifted: something other than the deployed digests runs.
	DriftDrifted DriftState = "Drifted"
	// DriftUnknown: the target was not observed recently.
	DriftUnknown DriftState = "Unknown"
)

// DriftPolicy says what to do when a target drifts.
// +kubebuilder:validation:Enum=Report;Revert
type DriftPolicy string

const (
	// DriftPolicyReport records drift as a condition and an Event.
	DriftPolicyReport DriftPolicy = "Report"
	// DriftPolicyRevert re-applies the desired release.
	DriftPolicyRevert DriftPolicy = "Revert"
)

// HealthState summarises the health checks of a target's components.
// +kubebuilder:validation:Enum=Healthy;Degraded;Unknown
type HealthState string

const (
	// HealthHealthy: every component passes its health check.
	HealthHealthy HealthState = "Healthy"
	// HealthDegraded: at least one component fails its health check.
	HealthDegraded HealthState = "Degraded"
	// HealthUnknown: health was not observed.
	HealthUnknown HealthState = "Unknown"
)

// TargetSpec says where and how a release runs.
// +kubebuilder:validation:XValidation:rule="self.type == 'compose' ? has(self.compose) : !has(self.compose)",message="compose is required when type is compose, and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="self.type == 'ecs' ? has(self.ecs) : !has(self.ecs)",message="ecs is required when type is ecs, and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="self.type == 'nomad' ? has(self.nomad) : !has(self.nomad)",message="nomad is required when type is nomad, and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="self.type == 'ssh' ? has(self.ssh) : !has(self.ssh)",message="ssh is required when type is ssh, and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="self.type in ['docker', 'compose'] ? has(self.agent) : true",message="agent is required for docker and compose targets"
// +kubebuilder:validation:XValidation:rule="self.type in ['ssh', 'nomad', 'ecs'] ? !has(self.agent) : true",message="agent must be empty for ssh, nomad and ecs targets: the server deploys to them itself"
type TargetSpec struct {
	// type of runtime: docker, compose, ecs, nomad or ssh.
	// +required
	Type TargetType `json:"type"`

	// agent names the Agent that deploys to this target. Required for docker
	// and compose; must be empty for ssh, nomad and ecs, whose targets the
	// server deploys to itself.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Agent string `json:"agent,omitempty"`

	// compose settings, for type compose.
	// +optional
	Compose *ComposeTarget `json:"compose,omitempty"`

	// ecs settings, for type ecs.
	// +optional
	ECS *ECSTarget `json:"ecs,omitempty"`

	// nomad settings, for type nomad.
	// +optional
	Nomad *NomadTarget `json:"nomad,omitempty"`

	// ssh settings, for type ssh.
	// +optional
	SSH *SSHTarget `json:"ssh,omitempty"`

	// stickerPath is where the version sticker stella.version.json is written
	// on the target host. Defaults to /var/lib/stella/<target>/stella.version.json.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	StickerPath string `json:"stickerPath,omitempty"`

	// components hold the per-component deploy templates, by component name.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Components []ComponentTemplate `json:"components,omitempty"`

	// driftPolicy says what to do when the target drifts. Defaults to Report.
	// +optional
	// +kubebuilder:default=Report
	DriftPolicy DriftPolicy `json:"driftPolicy,omitempty"`
}

// ComponentTemplate is how one component of a release runs on a target.
type ComponentTemplate struct {
	// name of the release component this template is for.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// containerName overrides the container's name. Defaults to
	// <target>-<component>.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ContainerName string `json:"containerName,omitempty"`

	// env sets environment variables.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	Env []EnvVar `json:"env,omitempty"`

	// envFrom takes environment variables from Secrets, each key a variable.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	EnvFrom []LocalObjectReference `json:"envFrom,omitempty"`

	// ports publishes container ports, docker-style: [ip:]hostPort:containerPort[/proto].
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^([0-9.]+:)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp|sctp))?$`
	Ports []string `json:"ports,omitempty"`

	// volumes mounts host paths or named volumes, docker-style: source:target[:ro].
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	Volumes []string `json:"volumes,omitempty"`

	// network joins the container to a Docker network.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Network string `json:"network,omitempty"`

	// restartPolicy: no, always, on-failure or unless-stopped. Defaults to unless-stopped.
	// +optional
	// +kubebuilder:validation:Enum=no;always;on-failure;unless-stopped
	RestartPolicy string `json:"restartPolicy,omitempty"`

	// healthCheck overrides the image's health check.
	// +optional
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	// name of the variable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`
	// value of the variable.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Value string `json:"value,omitempty"`
}

// HealthCheck says how to decide that a container is healthy.
type HealthCheck struct {
	// command run inside the container, in exec form; exit 0 is healthy.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	Command []string `json:"command,omitempty"`
	// interval between two checks. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Interval *metav1.Duration `json:"interval,omitempty"`
	// timeout of one check. Defaults to 5s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// retries before the container counts as unhealthy. Defaults to 3.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Retries int32 `json:"retries,omitempty"`
	// startPeriod during which failures do not count.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	StartPeriod *metav1.Duration `json:"startPeriod,omitempty"`
	// runningFor: without a command, the container is healthy once it has been
	// running this long. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	RunningFor *metav1.Duration `json:"runningFor,omitempty"`
}

// ComposeTarget deploys a Docker Compose project.
type ComposeTarget struct {
	// projectName passed to the compose CLI with -p.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9_-]*$`
	ProjectName string `json:"projectName"`
	// file is the path of the compose file on the target host.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	File string `json:"file"`
}

// ECSTarget deploys an existing AWS ECS service, from the server: each
// release registers a revision of the service's task definition with every
// container named after a release component running that component's digest
// and the version sticker in its Docker labels, then updates the service
// with the deployment circuit breaker (rollback on) and waits until it is
// stable on that revision.
type ECSTarget struct {
	// cluster name or ARN.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Cluster string `json:"cluster"`
	// service name or ARN.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Service string `json:"service"`
	// region such as eu-west-1.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z]{2}(-[a-z]+)+-[0-9]+$`
	Region string `json:"region"`
	// credentialsSecretRef names a Secret with the keys AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN; empty means the
	// default credential chain of the server (environment, shared files, the
	// instance's role).
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`
	// endpoint overrides the ECS API endpoint URL, for a VPC endpoint or a
	// compatible API.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	Endpoint string `json:"endpoint,omitempty"`
}

// NomadTarget deploys an existing Nomad service job, from the server: each
// release registers a new version of the job with every docker task named
// after a release component running that component's digest, and the
// version sticker in the job's Meta (stella-ops.org/sticker). Nomad rolls
// it out as the job's update block says; healthy canaries are promoted, a
// failed deployment fails the DeployTask, and a rollback reverts the job to
// the version that carried the previous sticker.
type NomadTarget struct {
	// address of the Nomad API, such as https://nomad.example.com:4646.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	Address string `json:"address"`
	// job ID. The job must exist: register it once with nomad job run.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Job string `json:"job"`
	// namespace of the job. Defaults to default.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Namespace string `json:"namespace,omitempty"`
	// region of the job.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Region string `json:"region,omitempty"`
	// tokenSecretRef names the Secret key that holds the ACL token; it needs
	// read-job, submit-job and list-jobs on the job's namespace.
	// +optional
	TokenSecretRef *SecretKeyReference `json:"tokenSecretRef,omitempty"`
}

// SSHTarget deploys over SSH without an agent: the server reaches the host's
// Docker socket and runs its docker or compose CLI over SSH. The version
// sticker is written on the host, at spec.stickerPath or
// /var/lib/stella/<target>/stella.version.json.
// +kubebuilder:validation:XValidation:rule="self.driver == 'compose' ? has(self.compose) : !has(self.compose)",message="compose is required when driver is compose, and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="has(self.hostKey) || self.trustOnFirstUse",message="pin the host's key in hostKey (ssh-keyscan -p PORT HOST prints it), or set trustOnFirstUse to pin the first key seen"
type SSHTarget struct {
	// host name or address.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// port of the SSH server. Defaults to 22.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// user to log in as; it must be able to use the Docker socket
	// /var/run/docker.sock (root, or a member of the docker group), and
	// sshd must allow stream forwarding (AllowStreamLocalForwarding, on by
	// default).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	User string `json:"user"`
	// hostKey pins the server's public host key, in authorized_keys format
	// ("ssh-ed25519 AAAA…"); a host that presents another key is refused.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	HostKey string `json:"hostKey,omitempty"`
	// trustOnFirstUse accepts the first host key seen when hostKey is empty
	// and writes it into hostKey, which pins it from then on. Off by default.
	// +optional
	TrustOnFirstUse bool `json:"trustOnFirstUse,omitempty"`
	// privateKeySecretRef names the Secret key holding the unencrypted
	// private key (OpenSSH or PEM format) to log in with.
	// +required
	PrivateKeySecretRef SecretKeyReference `json:"privateKeySecretRef"`
	// driver runs on the remote host: docker or compose.
	// +required
	// +kubebuilder:validation:Enum=docker;compose
	Driver TargetType `json:"driver"`
	// compose settings when driver is compose.
	// +optional
	Compose *ComposeTarget `json:"compose,omitempty"`
}

// TargetStatus is what really runs on the target.
type TargetStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Reconciling, Stalled, and Drifted while drift is seen.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observed is the version sticker read from the target.
	// +optional
	Observed *VersionSticker `json:"observed,omitempty"`

	// drift says whether the target runs what was deployed.
	// +optional
	Drift DriftState `json:"drift,omitempty"`

	// health of the target's components.
	// +optional
	Health HealthState `json:"health,omitempty"`

	// lastSeen is when the target was last observed.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
}

// VersionSticker says which release runs on a target; the same content is
// written to the target as stella.version.json.
type VersionSticker struct {
	// release that runs.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Release string `json:"release,omitempty"`
	// version of that release.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`
	// promotion that deployed it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Promotion string `json:"promotion,omitempty"`
	// components and the digests that really run.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Components []ComponentDigest `json:"components,omitempty"`
	// deployedAt is when the release was deployed.
	// +optional
	DeployedAt *metav1.Time `json:"deployedAt,omitempty"`
}

// Target is one place a release runs: a Docker host, a Compose project, an
// ECS service, a Nomad job or an SSH host, with how each component runs there.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tgt,categories=stella
// +kubebuilder:selectablefield:JSONPath=`.spec.agent`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.spec.agent`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.status.observed.release`
// +kubebuilder:printcolumn:name="Drift",type=string,JSONPath=`.status.drift`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Target struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says where and how releases run.
	// +required
	Spec TargetSpec `json:"spec"`

	// status is what really runs there.
	// +optional
	Status TargetStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// TargetList is a list of Targets.
type TargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Target `json:"items"`
}

func init() {
	register(&Target{}, &TargetList{})
}
