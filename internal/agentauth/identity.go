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

	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// Agent is the Agent an identity stands for.
type Agent struct{ Namespace, Name string }

// agentOf returns the Agent of an agent identity; ok is false for other
// users, and err says why a member of agentid.Group has a malformed name.
func agentOf(u user.Info) (a Agent, ok bool, err error) {
	if u == nil || !isAgent(u) {
		return Agent{}, false, nil
	}
	rest, found := strings.CutPrefix(u.GetName(), agentid.UserPrefix)
	ns, name, split := strings.Cut(rest, ":")
	if !found || !split || ns == "" || name == "" || strings.Contains(name, ":") {
		return Agent{}, true, fmt.Errorf("%q is in group %s but is not named %s<namespace>:<name>", u.GetName(), agentid.Group, agentid.UserPrefix)
	}
	return Agent{Namespace: ns, Name: name}, true, nil
}

func isAgent(u user.Info) bool {
	for _, g := range u.GetGroups() {
		if g == agentid.Group {
			return true
		}
	}
	return strings.HasPrefix(u.GetName(), agentid.UserPrefix)
}
