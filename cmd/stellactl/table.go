package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/stella-ops/stella/internal/scheme"
)

// printTable prints rows under columns with kubectl's table printer, so that
// stellactl's own tables are spaced and escaped like `stellactl get`.
func printTable(out io.Writer, columns []string, rows [][]any) error {
	table := &metav1.Table{}
	for _, name := range columns {
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: name, Type: "string"})
	}
	for _, cells := range rows {
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells})
	}
	if err := printers.NewTablePrinter(printers.PrintOptions{}).PrintObj(table, out); err != nil {
		return fmt.Errorf("printing a table of %v: %w", columns, err)
	}
	return nil
}

// outputFlags is -o for a command that prints its own table: the table when
// -o is not given, and otherwise cli-runtime's printers (json, yaml, name,
// jsonpath, go-template), so that -o means what it means to kubectl and an
// unknown format is refused with kubectl's own error.
type outputFlags struct {
	print *genericclioptions.PrintFlags
}

func newOutputFlags() *outputFlags {
	// The type setter fills in apiVersion and kind of typed API objects,
	// which a client leaves empty after it decodes them.
	return &outputFlags{print: genericclioptions.NewPrintFlags("").WithTypeSetter(scheme.New())}
}

func (o *outputFlags) addFlags(cmd *cobra.Command) {
	o.print.AddFlags(cmd)
	output := cmd.Flags().Lookup("output")
	output.Usage = "Output format: a table when not given, or one of: (" + strings.Join(o.print.AllowedFormats(), ", ") + ")."
}

// objectPrinter is the printer -o asks for, or nil when the table is wanted.
// Commands call it before they change anything, so that a mistyped -o
// refuses before any work is done.
func (o *outputFlags) objectPrinter() (printers.ResourcePrinter, error) {
	template := o.print.TemplatePrinterFlags.TemplateArgument
	if *o.print.OutputFormat == "" && (template == nil || *template == "") {
		return nil, nil
	}
	return o.print.ToPrinter()
}

// stellactlGroupVersion is the apiVersion of what stellactl computes and
// prints but the server does not store: a gate check, an advisory snapshot,
// a what-if comparison. Like the kinds kubectl prints for
// `auth can-i` reviews, they exist to be read by scripts with -o json.
var stellactlGroupVersion = schema.GroupVersion{Group: "stellactl.stella-ops.org", Version: "v1"}

// printable turns one of stellactl's own kinds into an object cli-runtime's
// printers print; obj must set its TypeMeta.
func printable(obj any) (*unstructured.Unstructured, error) {
	fields, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T for printing: %w", obj, err)
	}
	// A computed object has no creation time; print none rather than null.
	if ts, found, _ := unstructured.NestedFieldNoCopy(fields, "metadata", "creationTimestamp"); found && ts == nil {
		unstructured.RemoveNestedField(fields, "metadata", "creationTimestamp")
	}
	return &unstructured.Unstructured{Object: fields}, nil
}

// printableList is a v1 List of items, as `kubectl get` prints several
// objects, each item one of stellactl's own kinds.
func printableList[T any](items []T) (*unstructured.UnstructuredList, error) {
	list := &unstructured.UnstructuredList{Object: map[string]any{}}
	list.SetAPIVersion("v1")
	list.SetKind("List")
	list.Items = []unstructured.Unstructured{}
	for i := range items {
		item, err := printable(&items[i])
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, *item)
	}
	return list, nil
}
