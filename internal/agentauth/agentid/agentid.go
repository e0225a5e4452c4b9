// Package agentid names an agent's identity: the user and groups of its
// client certificate, the join token it starts from, and the Lease it
// heartbeats with. stella-agent asks
// for that identity and the server's agentauth confines it; this package
// stands apart from agentauth so that stella-agent links none of the API
// server's admission and authorization code.
package agentid

import "strings"

// Group holds every agent identity.
const Group = "stella:agents"

// UserPrefix starts the user name of an agent identity:
// stella:agent:<namespace>:<name>.
const UserPrefix = "stella:agent:"

// UserName is the identity of the Agent name in namespace.
func UserName(namespace, name string) string {
	return UserPrefix + namespace + ":" + name
}

// EnrolmentPrefix starts the group that binds an agent's certificate to
// one join of its host: stella:enrolment:<join token id>.
const EnrolmentPrefix = "stella:enrolment:"

// EnrolmentGroup is the group of the certificates of the join made with
// the join token id.
func EnrolmentGroup(id string) string { return EnrolmentPrefix + id }

// EnrolmentOf is the enrolment in groups, empty when there is none, and
// false when there are several.
func EnrolmentOf(groups []string) (string, bool) {
	var found []string
	for _, g := range groups {
		if id, ok := strings.CutPrefix(g, EnrolmentPrefix); ok {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", true
	case 1:
		return found[0], found[0] != ""
	}
	return "", false
}

// Join tokens are bootstrap tokens (Secrets bootstrap-token-<id> in
// JoinTokenNamespace) labelled with the Agent they let join
// (v1alpha1.LabelAgent and v1alpha1.LabelAgentNamespace); stellactl agent
// join-token makes them and the server's approver uses them up.
const (
	// JoinTokenNamespace holds the join tokens, as it holds every
	// bootstrap token the API server accepts.
	JoinTokenNamespace = "kube-system"
	// BootstrapGroup is the extra group of a join token's identity; only
	// it may ask for certificates.
	BootstrapGroup = "system:bootstrappers:stella-agents"
)

// LeaseName is the Lease an agent heartbeats with.
func LeaseName(agent string) string { return "agent-" + agent }
