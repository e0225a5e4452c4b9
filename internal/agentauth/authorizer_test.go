package agentauth

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func TestAuthorizer(t *testing.T) {
	agentA := &user.DefaultInfo{Name: UserName("shop", "host-a"), Groups: []string{Group}}
	byLabel := func(value string) labels.Requirements {
		r, err := labels.NewRequirement(labelAgent, selection.Equals, []string{value})
		if err != nil {
			t.Fatal(err)
		}
		return labels.Requirements{*r}
	}
	byField := func(field, value string) fields.Requirements {
		return fields.Requirements{{Field: field, Operator: selection.Equals, Value: value}}
	}
	stella := func(verb, resource, sub, name string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: agentA, Verb: verb, Namespace: "shop", APIGroup: "stella-ops.org", Resource: resource,
			Subresource: sub, Name: name, ResourceRequest: true}
	}
	with := func(a authorizer.AttributesRecord, f func(*authorizer.AttributesRecord)) authorizer.AttributesRecord {
		f(&a)
		return a
	}
	for _, tc := range []struct {
		name string
		attr authorizer.AttributesRecord
		want authorizer.Decision
	}{
		{"list own tasks", with(stella("list", "deploytasks", "", ""), func(a *authorizer.AttributesRecord) { a.LabelSelectorRequirements = byLabel("host-a") }), authorizer.DecisionAllow},
		{"watch another's tasks", with(stella("watch", "deploytasks", "", ""), func(a *authorizer.AttributesRecord) { a.LabelSelectorRequirements = byLabel("host-b") }), authorizer.DecisionDeny},
		{"list all tasks", stella("list", "deploytasks", "", ""), authorizer.DecisionDeny},
		{"get a task by name", stella("get", "deploytasks", "", "task-a"), authorizer.DecisionDeny},
		{"write task status", stella("patch", "deploytasks", "status", "task-a"), authorizer.DecisionAllow},
		{"write a task spec", stella("patch", "deploytasks", "", "task-a"), authorizer.DecisionDeny},
		{"list own targets", with(stella("list", "targets", "", ""), func(a *authorizer.AttributesRecord) { a.FieldSelectorRequirements = byField(fieldAgent, "host-a") }), authorizer.DecisionAllow},
		{"list another's targets", with(stella("list", "targets", "", ""), func(a *authorizer.AttributesRecord) { a.FieldSelectorRequirements = byField(fieldAgent, "host-b") }), authorizer.DecisionDeny},
		{"get own agent", stella("get", "agents", "", "host-a"), authorizer.DecisionAllow},
		{"get another agent", stella("get", "agents", "", "host-b"), authorizer.DecisionDeny},
		{"write own agent status", stella("update", "agents", "status", "host-a"), authorizer.DecisionAllow},
		{"read releases", stella("list", "releases", "", ""), authorizer.DecisionDeny},
		{"another namespace", with(stella("get", "agents", "", "host-a"), func(a *authorizer.AttributesRecord) { a.Namespace = "other" }), authorizer.DecisionDeny},
		{"own lease", authorizer.AttributesRecord{User: agentA, Verb: "update", Namespace: "shop", APIGroup: "coordination.k8s.io", Resource: "leases", Name: "agent-host-a", ResourceRequest: true}, authorizer.DecisionAllow},
		{"another lease", authorizer.AttributesRecord{User: agentA, Verb: "update", Namespace: "shop", APIGroup: "coordination.k8s.io", Resource: "leases", Name: "agent-host-b", ResourceRequest: true}, authorizer.DecisionDeny},
		{"secrets go to RBAC", authorizer.AttributesRecord{User: agentA, Verb: "get", Namespace: "shop", Resource: "secrets", Name: "x", ResourceRequest: true}, authorizer.DecisionNoOpinion},
		{"discovery goes to RBAC", authorizer.AttributesRecord{User: agentA, Verb: "get", Path: "/apis"}, authorizer.DecisionNoOpinion},
		{"other users go to RBAC", authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "alice"}, Verb: "list", Namespace: "shop", APIGroup: "stella-ops.org", Resource: "deploytasks", ResourceRequest: true}, authorizer.DecisionNoOpinion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason, err := Authorizer().Authorize(context.Background(), tc.attr)
			if err != nil || got != tc.want {
				t.Fatalf("got %v (%s, %v), want %v", got, reason, err, tc.want)
			}
		})
	}
}
