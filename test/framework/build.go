// Package framework runs Stella's real binaries for end-to-end tests: it
// builds them once, starts `stella serve` as a subprocess per test (the
// Kubernetes libraries allow one API server per process), and hands out
// clients that act as different users.
package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Binaries are the paths of the built programs.
type Binaries struct {
	Dir         string
	Stella      string
	Stellactl   string
	StellaAgent string
}

// Etcd is the path of an etcd binary built from the embedded etcd's module.
func (b Binaries) Etcd() string { return filepath.Join(b.Dir, "etcd") }

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build compiles stella, stellactl, stella-agent and etcd into a temporary directory once
// per test process, with the Makefile's flags so the build cache is shared
// with `make build`. STELLA_TEST_BIN_DIR points at prebuilt binaries instead.
func Build() (Binaries, error) {
	buildOnce.Do(func() { built, buildErr = build() })
	return built, buildErr
}

func build() (Binaries, error) {
	if dir := os.Getenv("STELLA_TEST_BIN_DIR"); dir != "" {
		return binariesIn(dir), nil
	}
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	dir, err := os.MkdirTemp("", "stella-test-bin-")
	if err != nil {
		return Binaries{}, err
	}
	make := exec.Command("make", "-s", "build", "BIN="+dir)
	make.Dir = root
	if out, err := make.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("make build: %w\n%s", err, out)
	}
	etcd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "etcd"), "./test/tools/etcd")
	etcd.Dir = root
	if out, err := etcd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("build etcd: %w\n%s", err, out)
	}
	return binariesIn(dir), nil
}

func binariesIn(dir string) Binaries {
	return Binaries{
		Dir:         dir,
		Stella:      filepath.Join(dir, "stella"),
		Stellactl:   filepath.Join(dir, "stellactl"),
		StellaAgent: filepath.Join(dir, "stella-agent"),
	}
}

// RepoRoot is the directory of the module's go.mod.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the stella module")
	}
	return filepath.Dir(gomod), nil
}
