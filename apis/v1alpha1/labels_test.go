package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestLabelValue(t *testing.T) {
	long253 := strings.Repeat("shop-api-1-4-0-to-production.", 8) + strings.Repeat("x", 21)
	for _, tc := range []struct {
		name, in string
		// same says the name is its own label value; otherwise the value
		// must start with prefix.
		same   bool
		prefix string
	}{
		{name: "short", in: "shop-1-to-dev", same: true},
		{name: "empty", in: "", same: true},
		{name: "exactly 63", in: strings.Repeat("a", 63), same: true},
		{name: "64", in: strings.Repeat("b", 64), prefix: strings.Repeat("b", 46) + "-"},
		{name: "253", in: long253, prefix: long253[:46] + "-"},
		{name: "ends badly at the cut", in: strings.Repeat("c", 45) + "." + strings.Repeat("d", 30), prefix: strings.Repeat("c", 45) + "-"},
		{name: "invalid characters", in: "team/shop:1", prefix: "team-shop-1-"},
		{name: "starts with a dot", in: ".hidden", prefix: "hidden-"},
		{name: "nothing usable", in: "///", prefix: ""},
		{name: "not ASCII", in: "prod-é", prefix: "prod-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LabelValue(tc.in)
			if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
				t.Fatalf("LabelValue(%q) = %q, not a label value: %v", tc.in, got, errs)
			}
			if tc.same {
				if got != tc.in {
					t.Errorf("LabelValue(%q) = %q, want the name itself", tc.in, got)
				}
				return
			}
			if !strings.HasPrefix(got, tc.prefix) || len(got) != len(tc.prefix)+labelHashLen {
				t.Errorf("LabelValue(%q) = %q, want %q and %d hex digits", tc.in, got, tc.prefix, labelHashLen)
			}
			if again := LabelValue(tc.in); again != got {
				t.Errorf("LabelValue is not stable: %q then %q", got, again)
			}
		})
	}
}

// Names that share the part that is kept still get different values.
func TestLabelValueTellsLongNamesApart(t *testing.T) {
	base := strings.Repeat("r", 70)
	seen := map[string]string{}
	for _, suffix := range []string{"-to-dev", "-to-prod", "-to-stage", "x", "y"} {
		v := LabelValue(base + suffix)
		if other, ok := seen[v]; ok {
			t.Fatalf("%q and %q share the label value %q", other, base+suffix, v)
		}
		seen[v] = base + suffix
	}
}
