package agentauth

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// Label and field an agent must select its DeployTasks and Targets by.
// They match the promotion reconciler's LabelAgent and the Target CRD's
// selectable field spec.agent.
const (
	labelAgent = v1alpha1.LabelAgent
	fieldAgent = v1alpha1.FieldTargetAgent
)

// Authorizer decides every request of an agent identity to Stella's API
// group, Leases, Events and certificate requests; other users' requests,
// and an agent's requests elsewhere (discovery), it leaves to RBAC.
//
// Reads are allowed only in shapes that name the agent: its Agent by name,
// Targets listed by spec.agent, DeployTasks listed by the agent label. A
// read of one Target or DeployTask by name is refused, because which agent
// it belongs to is in the object, which an authorizer does not see; status
// writes are allowed here and checked against the stored object by the
// admission plugin.
//
// An identity whose Agent was deleted or revoked, or whose certificate is
// of another join than the Agent's last, is refused everything, whatever
// its certificate's lifetime, as agents says.
func Authorizer(agents *Agents) authorizer.Authorizer {
	return authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		return authorize(agents, a)
	})
}

func authorize(agents *Agents, a authorizer.Attributes) (authorizer.Decision, string, error) {
	agent, ok, err := agentOf(a.GetUser())
	if !ok {
		return authorizer.DecisionNoOpinion, "", nil
	}
	if err != nil {
		return authorizer.DecisionDeny, err.Error(), nil
	}
	enrolment, ok := agentid.EnrolmentOf(a.GetUser().GetGroups())
	if !ok {
		return deny("agent %s/%s: a certificate carries at most one non-empty group %s<id>", agent.Namespace, agent.Name, agentid.EnrolmentPrefix)
	}
	if reason := agents.refusal(agent, enrolment); reason != "" {
		return authorizer.DecisionDeny, reason, nil
	}
	if !a.IsResourceRequest() {
		return authorizer.DecisionNoOpinion, "", nil
	}
	group, resource := a.GetAPIGroup(), a.GetResource()
	if resource == "certificatesigningrequests" && group == "certificates.k8s.io" {
		return csrDecision(agent, a)
	}
	switch {
	case group == v1alpha1.GroupVersion.Group, group == "coordination.k8s.io" && resource == "leases", (group == "" || group == "events.k8s.io") && resource == "events":
	default:
		return authorizer.DecisionNoOpinion, "", nil
	}
	if a.GetNamespace() != agent.Namespace {
		return deny("agent %s/%s works only in namespace %s", agent.Namespace, agent.Name, agent.Namespace)
	}
	verb, sub := a.GetVerb(), a.GetSubresource()
	switch resource {
	case "events":
		return allowIf(verb == "create" || verb == "patch", "agents create and patch Events only")
	case "leases":
		// A create names no object here: admission checks its name.
		return allowIf(verb == "create" || (a.GetName() == agentid.LeaseName(agent.Name) && (verb == "get" || verb == "update" || verb == "patch")),
			"agent %s may touch only Lease %s", agent.Name, agentid.LeaseName(agent.Name))
	case "agents":
		switch {
		case sub == "" && verb == "get" && a.GetName() == agent.Name:
			return allow()
		case sub == "" && (verb == "list" || verb == "watch") && selectsField(a, "metadata.name", agent.Name):
			return allow()
		case sub == "status" && isWrite(verb) && a.GetName() == agent.Name:
			return allow()
		}
		return deny("agent %s may read its own Agent and write its status, nothing else", agent.Name)
	case "targets":
		switch {
		case sub == "" && (verb == "list" || verb == "watch") && selectsField(a, fieldAgent, agent.Name):
			return allow()
		case sub == "status" && isWrite(verb):
			return allow() // its own Targets only: admission checks spec.agent
		}
		return deny("agent %s may list and watch Targets only with fieldSelector %s=%s, and write the status of those", agent.Name, fieldAgent, agent.Name)
	case "deploytasks":
		switch {
		case sub == "" && (verb == "list" || verb == "watch") && selectsLabel(a, labelAgent, v1alpha1.LabelValue(agent.Name)):
			return allow()
		case sub == "status" && isWrite(verb):
			return allow() // its own tasks only: admission checks the label
		}
		return deny("agent %s may list and watch DeployTasks only with labelSelector %s=%s, and write the status of those", agent.Name, labelAgent, v1alpha1.LabelValue(agent.Name))
	}
	return deny("agents may not %s %s", verb, resource)
}

// csrDecision lets an agent ask for its next certificate and read the
// request back; the approver signs only a request for its own identity.
func csrDecision(agent Agent, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetSubresource() == "" && (a.GetVerb() == "create" || a.GetVerb() == "get") {
		return allow()
	}
	return deny("agent %s may only create and read certificate signing requests", agent.Name)
}

func isWrite(verb string) bool { return verb == "update" || verb == "patch" }

// selectsField says whether a list or watch selects exactly field=value.
func selectsField(a authorizer.Attributes, field, value string) bool {
	reqs, err := a.GetFieldSelector()
	if err != nil {
		return false
	}
	for _, r := range reqs {
		if r.Field == field && (r.Operator == selection.Equals || r.Operator == selection.DoubleEquals) && r.Value == value {
			return true
		}
	}
	return false
}

// selectsLabel says whether a list or watch selects exactly label=value.
func selectsLabel(a authorizer.Attributes, label, value string) bool {
	reqs, err := a.GetLabelSelector()
	if err != nil {
		return false
	}
	for _, r := range reqs {
		if r.Key() == label && (r.Operator() == selection.Equals || r.Operator() == selection.DoubleEquals || r.Operator() == selection.In) &&
			r.Values().Len() == 1 && r.Values().Has(value) {
			return true
		}
	}
	return false
}

func allow() (authorizer.Decision, string, error) { return authorizer.DecisionAllow, "", nil }

func deny(format string, args ...any) (authorizer.Decision, string, error) {
	return authorizer.DecisionDeny, fmt.Sprintf(format, args...), nil
}

func allowIf(ok bool, format string, args ...any) (authorizer.Decision, string, error) {
	if ok {
		return allow()
	}
	return deny(format, args...)
}
