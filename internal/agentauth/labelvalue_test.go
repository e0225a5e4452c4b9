package agentauth

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// An agent whose name is longer than a label value lists its DeployTasks by
// the bounded value that labels them, v1alpha1.LabelValue of its name, and
// a value bounded from another name is refused.
func TestAuthorizerSelectsLongAgentNamesByLabelValue(t *testing.T) {
	name := strings.Repeat("host-", 20) + "a" // 101 characters
	agents := agentsOf(t, agentObject("shop", name, false))
	list := func(value string) authorizer.Decision {
		t.Helper()
		r, err := labels.NewRequirement(labelAgent, selection.Equals, []string{value})
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := authorize(agents, authorizer.AttributesRecord{User: &user.DefaultInfo{Name: agentid.UserName("shop", name), Groups: []string{agentid.Group}},
			Verb: "list", Namespace: "shop", APIGroup: "stella-ops.org", Resource: "deploytasks", ResourceRequest: true,
			LabelSelectorRequirements: labels.Requirements{*r}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := list(v1alpha1.LabelValue(name)); d != authorizer.DecisionAllow {
		t.Errorf("listing by its own label value: %v, want allowed", d)
	}
	if d := list(v1alpha1.LabelValue(name + "x")); d != authorizer.DecisionDeny {
		t.Errorf("listing by another long name's label value: %v, want denied", d)
	}
}

// An agent with a long name may write the status of the DeployTasks
// labelled with LabelValue of its name, and not of another agent's.
func TestAdmissionKnowsLongAgentNamesByLabelValue(t *testing.T) {
	name := strings.Repeat("host-", 20) + "a"
	plugins := admission.NewPlugins()
	Register(plugins, time.Hour)
	plugin, err := plugins.InitPlugin(PluginName, nil, admission.PluginInitializers{})
	if err != nil {
		t.Fatal(err)
	}
	write := func(labelled string) error {
		task := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "DeployTask",
			"metadata": map[string]any{"namespace": "shop", "name": "t", "labels": map[string]any{labelAgent: v1alpha1.LabelValue(labelled)}},
		}}
		a := admission.NewAttributesRecord(task, task.DeepCopy(), v1alpha1.GroupVersion.WithKind("DeployTask"), "shop", "t",
			v1alpha1.GroupVersion.WithResource("deploytasks"), "status", admission.Update, nil, false,
			&user.DefaultInfo{Name: agentid.UserName("shop", name), Groups: []string{agentid.Group}})
		return plugin.(admission.ValidationInterface).Validate(context.Background(), a, nil)
	}
	if err := write(name); err != nil {
		t.Errorf("its own task: %v", err)
	}
	if err := write(name + "x"); err == nil {
		t.Error("another agent's task was let through")
	}
}
