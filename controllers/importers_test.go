package controllers

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/stella-ops/stella"

// mayImportControllers are the only packages that may import this one: the
// server binary, which runs the reconcilers, and this package's own tests.
// Whatever else needs a label, a reason, the scheme or the gates' inputs
// finds them in apis/v1alpha1, internal/scheme and internal/inputs, so that
// the agent and the CLI never link the reconcilers and what they link.
var mayImportControllers = []string{
	module + "/cmd/stella",
	module + "/controllers",
	module + "/controllers_test",
}

// TestOnlyTheServerImportsControllers fails when a package of the module,
// or its tests, imports controllers from anywhere but cmd/stella.
func TestOnlyTheServerImportsControllers(t *testing.T) {
	if testing.Short() {
		t.Skip("lists every package of the module")
	}
	cmd := exec.Command("go", "list", "-e", "-f",
		"{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}} {{join .XTestImports \" \"}}", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s/...: %v: %s", module, err, stderr.String())
	}
	const controllers = module + "/controllers"
	listed := 0
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		listed++
		pkg, imports := fields[0], fields[1:]
		if slices.Contains(imports, controllers) && !slices.Contains(mayImportControllers, pkg) {
			t.Errorf("%s imports %s: take what it needs from apis/v1alpha1, internal/scheme or internal/inputs, or move it there", pkg, controllers)
		}
	}
	if listed < 10 {
		t.Fatalf("go list %s/... listed %d packages; want the whole module:\n%s", module, listed, out)
	}
}
