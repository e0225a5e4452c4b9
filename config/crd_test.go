package config

import (
	"io/fs"
	"path"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// The invariants the rest of Stella relies on must survive regeneration:
// a marker lost from apis/ would silently stop the server enforcing them.
func TestGeneratedCRDsCarryTheKeyRules(t *testing.T) {
	for _, tc := range []struct {
		crd  string
		path string // dot path of the schema node that holds the rule
		rule string // a part of the CEL rule
	}{
		{"releases", "spec", "self == oldSelf"},
		{"promotions", "spec", "self == oldSelf"},
		{"approvals", "spec", "self == oldSelf"},
		{"deploytasks", "spec", "self == oldSelf"},
		{"evidencepackets", "spec", "self == oldSelf"},
		{"releases", "spec.components.items.image", "@sha256:[a-f0-9]{64}$"},
		{"releases", "spec.version", "(0|[1-9][0-9]*)"},
		{"releases", "spec.components", "c.role == 'primary'"},
		{"scanreports", "spec.image", "@sha256:[a-f0-9]{64}$"},
		{"gates", "spec", ".filter(x, x).size() == 1"},
		{"environments", "", "!(self.metadata.name in self.spec.promotesFrom)"},
		{"targets", "spec", "self.type == 'compose' ? has(self.compose)"},
		{"promotions", "status.creationRevision", "self == oldSelf"},
		{"releases", "status.creationRevision", "self == oldSelf"},
	} {
		t.Run(tc.crd+"/"+tc.path, func(t *testing.T) {
			crd := loadCRD(t, tc.crd)
			node := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
			if tc.path != "" {
				for _, part := range strings.Split(tc.path, ".") {
					if part == "items" {
						node = node.Items.Schema
						continue
					}
					child, ok := node.Properties[part]
					if !ok {
						t.Fatalf("no %q in the schema of %s", tc.path, tc.crd)
					}
					node = &child
				}
			}
			for _, v := range node.XValidations {
				if strings.Contains(v.Rule, tc.rule) {
					if v.Message == "" {
						t.Errorf("rule %q has no message", v.Rule)
					}
					return
				}
			}
			t.Errorf("%s %s has no rule containing %q", tc.crd, tc.path, tc.rule)
		})
	}
}

// Every string and list in the API is bounded, so a client cannot make the
// server store or evaluate unbounded input.
func TestGeneratedCRDsAreBounded(t *testing.T) {
	files, err := fs.Glob(Manifests, path.Join(CRDDir, "*.yaml"))
	if err != nil || len(files) != 12 {
		t.Fatalf("want 12 CRDs, got %d (%v)", len(files), err)
	}
	for _, f := range files {
		crd := loadCRDFile(t, f)
		checkBounded(t, crd.Name, "", crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
	}
}

// kubectl resolves a short name to the first resource that declares it, so a
// Stella kind whose short name or plural a built-in resource already uses is
// unreachable by that name (EvidencePacket's "ev" once showed Events). The
// list is the short names and plurals of Kubernetes' own resources that
// kubectl knows.
func TestGeneratedCRDNamesCollideWithNothingKubectlKnows(t *testing.T) {
	builtin := map[string]bool{}
	for _, name := range strings.Fields(`
		cs componentstatuses cm configmaps ep endpoints ev events limits limitranges ns namespaces
		no nodes pvc persistentvolumeclaims pv persistentvolumes po pods rc replicationcontrollers
		quota resourcequotas sa serviceaccounts svc services crd crds customresourcedefinitions
		ds daemonsets deploy deployments rs replicasets sts statefulsets hpa horizontalpodautoscalers
		cj cronjobs jobs csr certificatesigningrequests ing ingresses netpol networkpolicies
		pdb poddisruptionbudgets pc priorityclasses sc storageclasses vac volumeattributesclasses
		leases secrets bindings roles rolebindings clusterroles clusterrolebindings
		apiservices tokenreviews selfsubjectreviews events.events.k8s.io all`) {
		builtin[name] = true
	}
	files, err := fs.Glob(Manifests, path.Join(CRDDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		names := loadCRDFile(t, f).Spec.Names
		for _, name := range append([]string{names.Plural, names.Singular}, names.ShortNames...) {
			if builtin[name] {
				t.Errorf("%s: the name %q is a Kubernetes resource's; kubectl would not reach %s by it", f, name, names.Kind)
			}
		}
	}
}

func checkBounded(t *testing.T, crd, at string, s *apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	// Label selectors are Kubernetes' own type, bounded by the request size.
	if at == ".spec.targetSelector" {
		return
	}
	switch s.Type {
	case "string":
		if s.MaxLength == nil && s.Format != "date-time" && len(s.Enum) == 0 && !s.XIntOrString {
			t.Errorf("%s: %s is an unbounded string", crd, at)
		}
	case "array":
		if s.MaxItems == nil {
			t.Errorf("%s: %s is an unbounded list", crd, at)
		}
		checkBounded(t, crd, at+"[]", s.Items.Schema)
	}
	for name, child := range s.Properties {
		if at == "" && (name == "metadata" || name == "apiVersion" || name == "kind") {
			continue
		}
		checkBounded(t, crd, at+"."+name, &child)
	}
}

func loadCRD(t *testing.T, plural string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	return loadCRDFile(t, path.Join(CRDDir, "stella-ops.org_"+plural+".yaml"))
}

func loadCRDFile(t *testing.T, name string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	raw, err := fs.ReadFile(Manifests, name)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return crd
}

// The reconciler stalls a promotion over more targets than status.targets
// holds, by the constant: the constant and the generated bound must agree.
func TestPromotionTargetsBoundIsMaxRolloutTargets(t *testing.T) {
	targets := loadCRD(t, "promotions").Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties["targets"]
	if targets.MaxItems == nil || *targets.MaxItems != v1alpha1.MaxRolloutTargets {
		t.Errorf("status.targets maxItems %v; want v1alpha1.MaxRolloutTargets, %d", targets.MaxItems, v1alpha1.MaxRolloutTargets)
	}
}
