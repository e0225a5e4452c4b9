package config

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A run-like object's terminal phase is its result: once stored, no write
// may change it, whoever sends it (the agent's late result, the server's
// timeout, a kubectl user). The CRDs' transition rules are evaluated here
// as the API server does, for every pair of phases the schema allows, and
// must agree with the Go types' IsTerminal.
func TestATerminalPhaseNeverChanges(t *testing.T) {
	for _, tc := range []struct {
		crd        string
		isTerminal func(string) bool
	}{
		{"deploytasks", func(p string) bool { return v1alpha1.DeployTaskPhase(p).IsTerminal() }},
		{"promotions", func(p string) bool { return v1alpha1.PromotionPhase(p).IsTerminal() }},
	} {
		t.Run(tc.crd, func(t *testing.T) {
			s := structuralSchema(t, loadCRD(t, tc.crd))
			validator := cel.NewValidator(s, true, celconfig.PerCallLimit)
			if validator == nil {
				t.Fatalf("%s has no validation rules", tc.crd)
			}
			validate := func(old, new map[string]any) field.ErrorList {
				errs, _ := validator.Validate(context.Background(), nil, s, object(new), object(old), celconfig.RuntimeCELCostBudget)
				return errs
			}
			phase := s.Properties["status"].Properties["phase"]
			if phase.ValueValidation == nil || len(phase.ValueValidation.Enum) == 0 {
				t.Fatalf("%s: status.phase has no enum", tc.crd)
			}
			phases := phase.ValueValidation.Enum
			for _, e := range phases {
				old := e.Object.(string)
				for _, f := range phases {
					next := f.Object.(string)
					errs := validate(map[string]any{"phase": old}, map[string]any{"phase": next})
					if refuse := tc.isTerminal(old) && next != old; refuse != (len(errs) > 0) {
						t.Errorf("%s -> %s: errors %v, want refused %t", old, next, errs, refuse)
					}
					if len(errs) > 0 && (errs[0].Field != "status.phase" || !strings.Contains(errs[0].Detail, "ended")) {
						t.Errorf("%s -> %s: %v; want it to name status.phase and say the %s ended", old, next, errs, tc.crd)
					}
				}
				if tc.isTerminal(old) {
					if errs := validate(map[string]any{"phase": old}, nil); len(errs) == 0 {
						t.Errorf("removing the status of a %s %s was allowed", old, tc.crd)
					}
					if errs := validate(map[string]any{"phase": old}, map[string]any{"message": "cleared"}); len(errs) == 0 {
						t.Errorf("removing the phase %s of a %s was allowed", old, tc.crd)
					}
				}
			}
		})
	}
}

// object is a stored object of the kinds under test with status st (none
// when nil); the rules read only the status.
func object(st map[string]any) map[string]any {
	o := map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "metadata": map[string]any{"name": "x"}}
	if st != nil {
		o["status"] = st
	}
	return o
}

func structuralSchema(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) *schema.Structural {
	t.Helper()
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crd.Spec.Versions[0].Schema.OpenAPIV3Schema, &internal, nil); err != nil {
		t.Fatal(err)
	}
	s, err := schema.NewStructural(&internal)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
