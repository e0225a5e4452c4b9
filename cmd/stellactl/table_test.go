package main

import (
	"strings"
	"testing"
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
