package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels Stella puts on the objects it creates, so that agents, people and
// the server can select them. Each value is LabelValue of an object's name:
// the name itself when it fits a label value, a bounded form otherwise. The
// full name is always in the object's spec (a DeployTask's spec.promotion
// and spec.target, an EvidencePacket's spec.promotion), and a reader that
// selects by one of these labels compares that field too.
const (
	// LabelPromotion on a DeployTask or an EvidencePacket: the Promotion it
	// belongs to.
	LabelPromotion = "stella-ops.org/promotion"
	// LabelTarget on a DeployTask: the Target it deploys to.
	LabelTarget = "stella-ops.org/target"
	// LabelEnvironment on a DeployTask: the Environment of its promotion.
	LabelEnvironment = "stella-ops.org/environment"
	// LabelAgent on a DeployTask: the Agent that runs it. An agent watches
	// only the tasks labelled with its own name, and the server lets it see
	// no other. Tasks for Targets that name no agent, which the server runs,
	// have none. On a join token (a bootstrap token Secret in kube-system):
	// the Agent it lets join, with LabelAgentNamespace.
	LabelAgent = "stella-ops.org/agent"
	// LabelAgentNamespace on a join token: the namespace of the Agent it
	// lets join.
	LabelAgentNamespace = "stella-ops.org/agent-namespace"
	// LabelAutoPromotion, "true" on a Promotion, says Stella created it by
	// itself for an environment that sets spec.autoPromote; a newer
	// release may supersede it while it is queued.
	LabelAutoPromotion = "stella-ops.org/auto-promotion"
	// LabelScannedBy on a ScanReport names the scanner that keeps it;
	// Stella's own scanner keeps only the reports labelled "stella", and
	// leaves those of other scanners as they are.
	LabelScannedBy = "stella-ops.org/scanned-by"
)

// AnnotationCancel on a Promotion asks to cancel it: it ends Cancelled, and
// no more DeployTasks are created (those already started run to their
// end). A value other than "true" says why, and shows in the Ready
// message: the auto-promotion controller names the promotion that
// superseded it.
const AnnotationCancel = "stella-ops.org/cancel"

// FieldTargetAgent selects Targets by the Agent that serves them (a
// selectable field of the Target CRD).
const FieldTargetAgent = "spec.agent"

// FieldApprovalPromotion selects Approvals by the Promotion they approve or
// reject (a selectable field of the Approval CRD).
const FieldApprovalPromotion = "spec.promotion"

// labelHashLen is how many hex digits of a name's SHA-256 end a bounded
// label value: 64 bits, so that two names of one namespace never meet by
// chance.
const labelHashLen = 16

// LabelValue is the value of a label that stands for the object name: the
// name itself when it is a valid label value (at most 63 characters of
// letters, digits, '-', '_' and '.', alphanumeric at both ends), and
// otherwise the start of the name, cut so that it stays valid, a '-' and
// 16 hex digits of the name's SHA-256. Object names reach 253 characters
// (auto-promotions are named <release>-to-<environment>), and a label
// value longer than 63 is refused by the API server: every writer and every
// selector of these labels goes through this one function.
func LabelValue(name string) string {
	if len(validation.IsValidLabelValue(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:labelHashLen]
	prefix := []byte(name[:min(len(name), validation.LabelValueMaxLength-labelHashLen-1)])
	for i, c := range prefix {
		if !labelChar(c) {
			prefix[i] = '-'
		}
	}
	start := strings.TrimFunc(string(prefix), func(r rune) bool { return !alphanumeric(byte(r)) })
	if start == "" {
		return suffix
	}
	return start + "-" + suffix
}

func labelChar(c byte) bool {
	return alphanumeric(c) || c == '-' || c == '_' || c == '.'
}

func alphanumeric(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
