package agentauth

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/tools/cache"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// agentsOf are loaded Agents holding the given ones.
func agentsOf(t *testing.T, agents ...*unstructured.Unstructured) *Agents {
	t.Helper()
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, a := range agents {
		kept, err := keepStanding(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(kept); err != nil {
			t.Fatal(err)
		}
	}
	w := NewAgents()
	w.use(cache.NewGenericLister(store, v1alpha1.GroupVersion.WithResource("agents").GroupResource()))
	return w
}

func agentObject(ns, name string, revoked bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "Agent",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"capabilities": []any{"docker"}, "revoked": revoked},
		"status":   map[string]any{"hostname": "h"},
	}}
	return u
}

func TestAuthorizer(t *testing.T) {
	agentA := &user.DefaultInfo{Name: agentid.UserName("shop", "host-a"), Groups: []string{agentid.Group}}
	agents := agentsOf(t, agentObject("shop", "host-a", false))
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
			got, reason, err := Authorizer(agents).Authorize(context.Background(), tc.attr)
			if err != nil || got != tc.want {
				t.Fatalf("got %v (%s, %v), want %v", got, reason, err, tc.want)
			}
		})
	}
}

// An agent's certificate outlives its Agent: once the Agent is deleted or
// revoked, or its host joined again, the identity is refused everything,
// its own Targets, its certificate renewal and discovery included, and the
// reason says why.
func TestAuthorizerRefusesAgentsGoneOrRevoked(t *testing.T) {
	ownTargets := func(u user.Info, name string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: "list", Namespace: "shop", APIGroup: "stella-ops.org", Resource: "targets", ResourceRequest: true,
			FieldSelectorRequirements: fields.Requirements{{Field: fieldAgent, Operator: selection.Equals, Value: name}}}
	}
	renewal := func(u user.Info) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: "create", APIGroup: "certificates.k8s.io", Resource: "certificatesigningrequests", ResourceRequest: true}
	}
	discovery := func(u user.Info) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: "get", Path: "/apis"}
	}
	identity := func(name string, groups ...string) user.Info {
		return &user.DefaultInfo{Name: agentid.UserName("shop", name), Groups: append([]string{agentid.Group}, groups...)}
	}
	enrolled := agentObject("shop", "host-e", false)
	enrolled.SetAnnotations(map[string]string{v1alpha1.AnnotationAgentEnrolment: "abcdef", "other": "x"})
	loaded := agentsOf(t, agentObject("shop", "host-a", false), agentObject("shop", "host-r", true), agentObject("other", "host-d", false), enrolled)
	for _, tc := range []struct {
		name   string
		agents *Agents
		attr   authorizer.AttributesRecord
		want   authorizer.Decision
		reason string
	}{
		{"standing agent lists its targets", loaded, ownTargets(identity("host-a"), "host-a"), authorizer.DecisionAllow, ""},
		{"standing agent renews", loaded, renewal(identity("host-a")), authorizer.DecisionAllow, ""},
		{"deleted agent lists its targets", loaded, ownTargets(identity("host-d"), "host-d"), authorizer.DecisionDeny, "Agent shop/host-d does not exist"},
		{"deleted agent renews", loaded, renewal(identity("host-d")), authorizer.DecisionDeny, "Agent shop/host-d does not exist"},
		{"deleted agent discovers", loaded, discovery(identity("host-d")), authorizer.DecisionDeny, "Agent shop/host-d does not exist"},
		{"revoked agent lists its targets", loaded, ownTargets(identity("host-r"), "host-r"), authorizer.DecisionDeny, "Agent shop/host-r is revoked"},
		{"revoked agent renews", loaded, renewal(identity("host-r")), authorizer.DecisionDeny, "Agent shop/host-r is revoked"},
		{"certificate of the Agent's enrolment", loaded, ownTargets(identity("host-e", agentid.EnrolmentGroup("abcdef")), "host-e"), authorizer.DecisionAllow, ""},
		{"certificate of an earlier join", loaded, ownTargets(identity("host-e", agentid.EnrolmentGroup("ghijkl")), "host-e"), authorizer.DecisionDeny, "earlier join of Agent shop/host-e"},
		{"certificate of an earlier Agent of the name", loaded, ownTargets(identity("host-a", agentid.EnrolmentGroup("ghijkl")), "host-a"), authorizer.DecisionDeny, "earlier join of Agent shop/host-a"},
		{"certificate from before enrolments", loaded, ownTargets(identity("host-e"), "host-e"), authorizer.DecisionDeny, "earlier join of Agent shop/host-e"},
		{"certificate of two enrolments", loaded, ownTargets(identity("host-e", agentid.EnrolmentGroup("abcdef"), agentid.EnrolmentGroup("ghijkl")), "host-e"), authorizer.DecisionDeny, "at most one"},
		{"agents not loaded yet", NewAgents(), ownTargets(identity("host-a"), "host-a"), authorizer.DecisionDeny, "not loaded the Agents yet"},
		{"other users need no Agent", NewAgents(), discovery(&user.DefaultInfo{Name: "alice"}), authorizer.DecisionNoOpinion, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason, err := Authorizer(tc.agents).Authorize(context.Background(), tc.attr)
			if err != nil || got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Fatalf("got %v (%q, %v), want %v (%q)", got, reason, err, tc.want, tc.reason)
			}
		})
	}
}
