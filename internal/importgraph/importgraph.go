// Package importgraph reads what a package links from `go list`, so that
// tests can keep the server's libraries out of stella-agent and stellactl
// and, when one creeps in, name the import that brought it.
package importgraph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Chains finds which of modules pkg links: for each one linked, the
// shortest chain of imports from pkg to a package of that module. pkg is
// an import path; modules are module or package path prefixes, such as
// "cuelang.org/go".
func Chains(pkg string, modules ...string) (map[string][]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	imports := map[string][]string{}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read go list -deps %s: %w", pkg, err)
		}
		imports[p.ImportPath] = p.Imports
	}
	if _, ok := imports[pkg]; !ok {
		return nil, fmt.Errorf("go list -deps %s did not list %s itself: give an import path, not a directory", pkg, pkg)
	}
	// Breadth first from pkg, so that the chain kept to each package is a
	// shortest one.
	from := map[string]string{pkg: ""}
	queue := []string{pkg}
	chains := map[string][]string{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, m := range modules {
			if _, seen := chains[m]; !seen && (p == m || strings.HasPrefix(p, m+"/")) {
				chains[m] = chainTo(p, from)
			}
		}
		for _, next := range imports[p] {
			if _, seen := from[next]; !seen {
				from[next] = p
				queue = append(queue, next)
			}
		}
	}
	return chains, nil
}

// chainTo follows from back to the start.
func chainTo(p string, from map[string]string) []string {
	var chain []string
	for ; p != ""; p = from[p] {
		chain = append([]string{p}, chain...)
	}
	return chain
}
