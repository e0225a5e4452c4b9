// Package agentauth confines an agent's identity to what its own Agent
// needs, in the manner of Kubernetes' Node authorizer and NodeRestriction:
// the authorizer lets an agent read only its own Agent, the Targets that
// name it and their DeployTasks, and the admission plugin lets it write
// status only to those. A join token turns into such an identity.
package agentauth

import (
	"fmt"
	"strings"

	"k8s.io/apiserver/pkg/authentication/user"
)

// Group holds every agent identity.
const Group = "stella:agents"

// userPrefix starts the user name of an agent identity:
// stella:agent:<namespace>:<name>.
const userPrefix = "stella:agent:"

// UserName is the identity of the Agent name in namespace.
func UserName(namespace, name string) string {
	return userPrefix + namespace + ":" + name
}

// enrolmentPrefix starts the group that binds an agent's certificate to
// one join of its host: stella:enrolment:<join token id>.
const enrolmentPrefix = "stella:enrolment:"

// EnrolmentGroup is the group of the certificates of the join made with
// the join token id.
func EnrolmentGroup(id string) string { return enrolmentPrefix + id }

// EnrolmentOf is the enrolment in groups, empty when there is none, and
// false when there are several.
func EnrolmentOf(groups []string) (string, bool) {
	var found []string
	for _, g := range groups {
		if id, ok := strings.CutPrefix(g, enrolmentPrefix); ok {
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

// LeaseName is the Lease an agent heartbeats with.
func LeaseName(agent string) string { return "agent-" + agent }

// Agent is the Agent an identity stands for.
type Agent struct{ Namespace, Name string }

// agentOf returns the Agent of an agent identity; ok is false for other
// users, and err says why a member of Group has a malformed name.
func agentOf(u user.Info) (a Agent, ok bool, err error) {
	if u == nil || !isAgent(u) {
		return Agent{}, false, nil
	}
	rest, found := strings.CutPrefix(u.GetName(), userPrefix)
	ns, name, split := strings.Cut(rest, ":")
	if !found || !split || ns == "" || name == "" || strings.Contains(name, ":") {
		return Agent{}, true, fmt.Errorf("%q is in group %s but is not named %s<namespace>:<name>", u.GetName(), Group, userPrefix)
	}
	return Agent{Namespace: ns, Name: name}, true, nil
}

func isAgent(u user.Info) bool {
	for _, g := range u.GetGroups() {
		if g == Group {
			return true
		}
	}
	return strings.HasPrefix(u.GetName(), userPrefix)
}
