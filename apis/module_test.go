// Package apis_test checks that the API types are a Go module of their own
// that other programs can import without Stella's server dependencies.
package apis_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// outsider is a program of another module that reads and writes Stella
// objects with the types alone, as a CI tool or an operator would.
const outsider = `package main

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func main() {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	p := &v1alpha1.Promotion{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Promotion"},
		ObjectMeta: metav1.ObjectMeta{Name: "shop-1-to-prod"},
		Spec:       v1alpha1.PromotionSpec{Release: "shop-1", Environment: "prod"},
	}
	out, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	gvks, _, err := s.ObjectKinds(p)
	if err != nil {
		panic(err)
	}
	fmt.Println(gvks[0].Kind, string(out))
}
`

// Modules the API module must never bring to its importers: the server's.
var serverModules = []string{
	"k8s.io/kubernetes", "k8s.io/apiserver", "k8s.io/client-go", "go.etcd.io/etcd",
	"cuelang.org/go", "github.com/aws/aws-sdk-go-v2", "github.com/hashicorp/nomad", "github.com/minio/minio-go",
}

// A module outside Stella builds against the API module with no replace
// line but the one pointing at this checkout, which stands for the
// published module, and needs none of the server's modules.
func TestAnOutsideModuleBuildsAgainstTheAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	apis, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goMod := "module example.com/outsider\n\ngo 1.26.3\n\nrequire github.com/stella-ops/stella/apis v0.0.0\n\nreplace github.com/stella-ops/stella/apis => " + apis + "\n"
	sums, err := os.ReadFile(filepath.Join(apis, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"go.mod": []byte(goMod), "go.sum": sums, "main.go": []byte(outsider)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("run", ".")
	if !strings.HasPrefix(out, `Promotion {"kind":"Promotion","apiVersion":"stella-ops.org/v1alpha1","metadata":{"name":"shop-1-to-prod"`) {
		t.Errorf("the outside program printed %q", out)
	}
	modules := run("list", "-m", "all")
	for _, m := range serverModules {
		if strings.Contains(modules, m+" ") || strings.Contains(modules, m+"/") {
			t.Errorf("importing the API brings %s:\n%s", m, modules)
		}
	}
}
