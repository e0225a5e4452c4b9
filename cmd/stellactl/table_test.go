package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scan"
)

// TestPrintTable pins the layout stellactl's own tables share with
// `stellactl get`: upper-case headers, one line per row, aligned columns, and
// nothing at all when there are no rows.
func TestPrintTable(t *testing.T) {
	var out strings.Builder
	rows := [][]any{{"two-approvers", "approval", "Pending", "approval.insufficient", "1 of 2"}, {"soak", "soak", "Pass", "", "soaked"}}
	if err := printTable(&out, []string{"Gate", "Type", "Result", "Reasons", "Message"}, rows); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"GATE            TYPE       RESULT    REASONS                 MESSAGE\n" +
		"two-approvers   approval   Pending   approval.insufficient   1 of 2\n" +
		"soak            soak       Pass                              soaked\n"
	if out.String() != want {
		t.Errorf("printTable =\n%s\nwant\n%s", out.String(), want)
	}

	out.Reset()
	if err := printTable(&out, []string{"Gate", "Type"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "" {
		t.Errorf("printTable with no rows = %q, want nothing", got)
	}
}

// objectOutput runs the printer -o FORMAT asks for on what a command
// printed, as the command's RunE does.
func objectOutput(t *testing.T, format string, print func(printers.ResourcePrinter, io.Writer) error) (string, error) {
	t.Helper()
	output := newOutputFlags()
	cmd := &cobra.Command{Use: "test"}
	output.addFlags(cmd)
	if err := cmd.Flags().Set("output", format); err != nil {
		t.Fatal(err)
	}
	printer, err := output.objectPrinter()
	if err != nil {
		return "", err
	}
	if printer == nil {
		t.Fatalf("-o %s gave no printer", format)
	}
	var out strings.Builder
	err = print(printer, &out)
	return out.String(), err
}

// TestUnknownOutputIsRefusedAsKubectlDoes: a mistyped -o is refused before
// any work, with kubectl's own message that lists what it takes; no -o at
// all is the table.
func TestUnknownOutputIsRefusedAsKubectlDoes(t *testing.T) {
	for _, format := range []string{"jsn", "table", "wide", "cyclonedx"} {
		_, err := objectOutput(t, format, func(printers.ResourcePrinter, io.Writer) error {
			t.Fatalf("-o %s printed", format)
			return nil
		})
		if !genericclioptions.IsNoCompatiblePrinterError(err) {
			t.Errorf("-o %s: err = %v, want kubectl's NoCompatiblePrinterError", format, err)
			continue
		}
		for _, want := range []string{`"` + format + `"`, "json", "yaml", "name"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("-o %s: %q does not name %s", format, err, want)
			}
		}
	}
	printer, err := newOutputFlags().objectPrinter()
	if printer != nil || err != nil {
		t.Errorf("no -o gave printer %T, err %v; want the table", printer, err)
	}
}

func TestGateCheckOutput(t *testing.T) {
	check := &GateCheck{
		TypeMeta:   metav1.TypeMeta{APIVersion: stellactlGroupVersion.String(), Kind: "GateCheck"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop-2.3.1-to-prod-check"},
		Spec:       GateCheckSpec{Release: "shop-2.3.1", Environment: "prod", RequestedBy: "alice"},
		Status: GateCheckStatus{
			Gates: []v1alpha1.GateEvaluation{
				{Name: "two-approvers", Type: "approval", Result: v1alpha1.GatePending, ReasonCodes: []string{"approval.insufficient"}, Message: "1 of 2"},
				{Name: "soak", Type: "soak", Result: v1alpha1.GatePass, Message: "soaked"},
			},
			Decision: v1alpha1.DecisionPending, ReasonCodes: []string{"approval.insufficient"},
		},
	}
	print := func(p printers.ResourcePrinter, out io.Writer) error { return printGateCheck(out, p, check) }

	var table strings.Builder
	if err := printGateCheck(&table, nil, check); err != nil {
		t.Fatal(err)
	}
	wantTable := "" +
		"GATE            TYPE       RESULT    REASONS                 MESSAGE\n" +
		"two-approvers   approval   Pending   approval.insufficient   1 of 2\n" +
		"soak            soak       Pass                              soaked\n" +
		"\nDecision: pending (approval.insufficient)\n"
	if table.String() != wantTable {
		t.Errorf("table =\n%s\nwant\n%s", table.String(), wantTable)
	}

	for _, format := range []string{"json", "yaml"} {
		text, err := objectOutput(t, format, print)
		if err != nil {
			t.Fatalf("-o %s: %v", format, err)
		}
		var got GateCheck
		if err := yaml.UnmarshalStrict([]byte(text), &got); err != nil {
			t.Fatalf("-o %s printed what does not read back as a GateCheck: %v\n%s", format, err, text)
		}
		if !reflect.DeepEqual(&got, check) {
			t.Errorf("-o %s read back as\n%+v\nwant\n%+v", format, got, *check)
		}
	}
	if text, _ := objectOutput(t, "json", print); strings.Contains(text, "creationTimestamp") {
		t.Errorf("-o json prints a creation time a computed check does not have:\n%s", text)
	}

	name, err := objectOutput(t, "name", print)
	if want := "gatecheck.stellactl.stella-ops.org/shop-2.3.1-to-prod-check\n"; err != nil || name != want {
		t.Errorf("-o name = %q, %v; want %q", name, err, want)
	}
	decision, err := objectOutput(t, "jsonpath={.status.decision}", print)
	if err != nil || decision != "pending" {
		t.Errorf("-o jsonpath={.status.decision} = %q, %v; want pending", decision, err)
	}
}

func TestAdvisorySnapshotsOutput(t *testing.T) {
	imported := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	infos := []scan.SnapshotInfo{
		{Digest: "sha256:aaa", Source: "osv.dev/Debian", ImportedAt: imported, Documents: 2, Active: true},
		{Digest: "sha256:bbb", Source: "internal-feed", ImportedAt: imported.Add(-time.Hour), Documents: 1},
	}
	print := func(p printers.ResourcePrinter, out io.Writer) error { return printSnapshots(out, p, infos) }

	for _, format := range []string{"json", "yaml"} {
		text, err := objectOutput(t, format, print)
		if err != nil {
			t.Fatalf("-o %s: %v", format, err)
		}
		var got struct {
			metav1.TypeMeta `json:",inline"`
			Items           []AdvisorySnapshot `json:"items"`
		}
		if err := yaml.Unmarshal([]byte(text), &got); err != nil {
			t.Fatalf("-o %s: %v\n%s", format, err, text)
		}
		if got.APIVersion != "v1" || got.Kind != "List" || len(got.Items) != 2 {
			t.Fatalf("-o %s = %s %s with %d items, want a v1 List of 2:\n%s", format, got.APIVersion, got.Kind, len(got.Items), text)
		}
		first := got.Items[0]
		if first.Kind != "AdvisorySnapshot" || first.APIVersion != "stellactl.stella-ops.org/v1" || first.Name != "sha256:aaa" ||
			first.Source != "osv.dev/Debian" || first.Advisories != 2 || !first.Active || !first.ImportedAt.Time.Equal(imported) {
			t.Errorf("-o %s: first item = %+v", format, first)
		}
		if got.Items[1].Name != "sha256:bbb" || got.Items[1].Active {
			t.Errorf("-o %s: second item = %+v", format, got.Items[1])
		}
	}

	names, err := objectOutput(t, "name", print)
	want := "advisorysnapshot.stellactl.stella-ops.org/sha256:aaa\nadvisorysnapshot.stellactl.stella-ops.org/sha256:bbb\n"
	if err != nil || names != want {
		t.Errorf("-o name = %q, %v; want %q", names, err, want)
	}

	empty, err := objectOutput(t, "json", func(p printers.ResourcePrinter, out io.Writer) error { return printSnapshots(out, p, nil) })
	if err != nil || !strings.Contains(empty, `"items": []`) {
		t.Errorf("-o json of no snapshots = %q, %v; want an empty List", empty, err)
	}
}

// TestCreatedReleaseOutput: -o prints the Release as the server returned
// it, with its apiVersion and kind, as `kubectl create -o` does.
func TestCreatedReleaseOutput(t *testing.T) {
	rel := &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop-2.3.1", UID: "u-1",
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "stellactl", Operation: metav1.ManagedFieldsOperationUpdate}}},
		Spec: v1alpha1.ReleaseSpec{Version: "2.3.1", Components: []v1alpha1.ReleaseComponent{
			{Name: "api", Image: "registry.example.com/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		}},
	}
	print := func(p printers.ResourcePrinter, out io.Writer) error { return p.PrintObj(rel.DeepCopy(), out) }
	for _, format := range []string{"json", "yaml"} {
		text, err := objectOutput(t, format, print)
		if err != nil {
			t.Fatalf("-o %s: %v", format, err)
		}
		var got v1alpha1.Release
		if err := yaml.UnmarshalStrict([]byte(text), &got); err != nil {
			t.Fatalf("-o %s: %v\n%s", format, err, text)
		}
		if got.APIVersion != "stella-ops.org/v1alpha1" || got.Kind != "Release" || got.UID != "u-1" || !reflect.DeepEqual(got.Spec, rel.Spec) {
			t.Errorf("-o %s read back as %+v", format, got)
		}
		if got.ManagedFields != nil {
			t.Errorf("-o %s shows managedFields, which kubectl leaves out unless --show-managed-fields", format)
		}
	}
	name, err := objectOutput(t, "name", print)
	if want := "release.stella-ops.org/shop-2.3.1\n"; err != nil || name != want {
		t.Errorf("-o name = %q, %v; want %q", name, err, want)
	}
}
