package install

import (
	"testing"

	"github.com/stella-ops/stella/config"
)

// install-crds applies the controllers' own identity with the users' roles,
// the namespace before what it holds, and not the kustomization that lists
// the files for kubectl apply -k.
func TestRBACManifestsCarryTheControllersIdentity(t *testing.T) {
	objs, err := readDir(config.Manifests, config.RBACDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 || objs[0].GetKind() != "Namespace" || objs[0].GetName() != "stella-system" {
		t.Fatalf("the stella-system Namespace must come first, got %s %s", objs[0].GetKind(), objs[0].GetName())
	}
	found := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() == "Kustomization" {
			t.Errorf("the kustomization is applied as an object")
		}
		if o.GetName() == "stella-controllers" {
			found[o.GetKind()+" "+o.GetNamespace()] = true
		}
	}
	for _, want := range []string{
		"ServiceAccount stella-system", "ClusterRole ", "ClusterRoleBinding ",
		"Role stella-system", "RoleBinding stella-system", "Role kube-system", "RoleBinding kube-system",
	} {
		if !found[want] {
			t.Errorf("no %s stella-controllers among the manifests install-crds applies (found %v)", want, found)
		}
	}
}
