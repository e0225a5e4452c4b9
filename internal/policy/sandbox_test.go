package policy_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella/internal/policy"
)

// The test binary is its own worker: the sandbox runs it again with
// STELLA_POLICY_WORKER set, and the policy package serves from its
// initialisation on, before any test runs.

// spinning never finishes compiling: four nested for clauses over a
// hundred numbers are a hundred million iterations.
const spinning = `
import "list"

_n: list.Range(0, 100, 1)
_sums: [for a in _n for b in _n for c in _n for d in _n if a+b+c+d < 0 {a}]
allow: len(_sums) == 0
reasons: []
`

// memoryBomb asks for a five-gigabyte string.
const memoryBomb = `
import "strings"

allow: len(strings.Repeat(strings.Repeat("x", 1000000), 5000)) > 0
reasons: []
`

const trivial = `allow: input.environment.name == "dev"
reasons: []
`

func newSandbox(t *testing.T, o policy.SandboxOptions) *policy.Sandbox {
	t.Helper()
	s := policy.NewSandbox(o)
	t.Cleanup(s.Close)
	return s
}

func TestSandboxStopsASpinningPolicyWhileAnotherTenantDecides(t *testing.T) {
	s := newSandbox(t, policy.SandboxOptions{Workers: 2, Timeout: 10 * time.Second})
	ctx := context.Background()

	spun := make(chan error, 1)
	go func() { spun <- s.Check(ctx, "team-a", spinning) }()

	// While team-a's policy spins in one worker, team-b's is decided in
	// the other, again and again, long before team-a's budget runs out.
	for range 5 {
		d, err := s.Evaluate(ctx, "team-b", trivial, policy.Input{Environment: policy.Environment{Name: "dev"}})
		if err != nil || !d.Allow {
			t.Fatalf("trivial policy: %+v, %v", d, err)
		}
	}
	select {
	case err := <-spun:
		t.Fatalf("the spinning policy ended (%v) before the other tenant's were decided: they waited for it", err)
	default:
	}
	err := <-spun
	var budget *policy.BudgetError
	if !errors.As(err, &budget) || budget.Budget != policy.BudgetTime {
		t.Fatalf("spinning policy: got %v, want the time budget exceeded", err)
	}
	if !strings.Contains(err.Error(), "time budget of 10s") {
		t.Errorf("message %q does not name the budget", err)
	}

	// Remembered: refused at once, without a worker.
	if err := s.Check(ctx, "team-a", spinning); !errors.As(err, &budget) {
		t.Fatalf("second check: %v, want the remembered budget error", err)
	}
	// And the sandbox still works for team-a's other policies.
	if err := s.Check(ctx, "team-a", trivial); err != nil {
		t.Fatalf("team-a's trivial policy after its spinning one: %v", err)
	}
}

func TestSandboxSurvivesAMemoryBomb(t *testing.T) {
	s := newSandbox(t, policy.SandboxOptions{Workers: 1, Memory: 256 << 20, Timeout: time.Minute})
	ctx := context.Background()

	err := s.Check(ctx, "team-a", memoryBomb)
	var budget *policy.BudgetError
	if !errors.As(err, &budget) || budget.Budget != policy.BudgetMemory {
		t.Fatalf("memory bomb: got %v, want the memory budget exceeded", err)
	}
	if !strings.Contains(err.Error(), "memory budget of 256 MiB") {
		t.Errorf("message %q does not name the budget", err)
	}
	// The only worker died; a fresh one decides the next policy.
	d, err := s.Evaluate(ctx, "team-b", trivial, policy.Input{Environment: policy.Environment{Name: "prod"}})
	if err != nil || d.Allow || d.Code != policy.CodeDenied {
		t.Fatalf("trivial policy after the bomb: %+v, %v", d, err)
	}
}

func TestSandboxReplacesACrashedWorker(t *testing.T) {
	var mu sync.Mutex
	var started []*exec.Cmd
	s := newSandbox(t, policy.SandboxOptions{Workers: 1, Command: func() *exec.Cmd {
		cmd := policy.Reexec()
		mu.Lock()
		started = append(started, cmd)
		mu.Unlock()
		return cmd
	}})
	ctx := context.Background()
	if err := s.Check(ctx, "team-a", trivial); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	first := started[0]
	mu.Unlock()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// The request that meets the dead worker fails closed with the cause;
	// the one after it gets a new worker.
	_, err := s.Evaluate(ctx, "team-a", trivial, policy.Input{})
	if err == nil || !strings.Contains(err.Error(), "policy worker failed") {
		t.Fatalf("request to the killed worker: %v, want the worker's failure", err)
	}
	d, err := s.Evaluate(ctx, "team-a", trivial, policy.Input{Environment: policy.Environment{Name: "dev"}})
	if err != nil || !d.Allow {
		t.Fatalf("request after the crash: %+v, %v", d, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 2 {
		t.Errorf("started %d workers, want 2", len(started))
	}
}

func TestSandboxAnswersLikeTheLibrary(t *testing.T) {
	s := newSandbox(t, policy.SandboxOptions{})
	ctx := context.Background()
	in := policy.Input{Release: policy.Release{Version: "1.0.0"}, Environment: policy.Environment{Name: "prod"}}
	for _, source := range []string{
		trivial,
		`allow: false` + "\n" + `reasons: ["no \(input.environment.name)"]`,
		`input: release: version: =~"^2\\."` + "\nallow: true\nreasons: []",
		`allow: input.nothing` + "\nreasons: []",
		"allow: [1][input.environment.order + 3] == 1\nreasons: []",
		"allow: true",
	} {
		wantD, wantErr := evaluateInProcess(source, in)
		d, err := s.Evaluate(ctx, "t", source, in)
		if errString(err) != errString(wantErr) || strings.Join(d.Reasons, "|") != strings.Join(wantD.Reasons, "|") || d.Allow != wantD.Allow || d.Code != wantD.Code {
			t.Errorf("%q: sandbox gave %+v, %v; library %+v, %v", source, d, err, wantD, wantErr)
		}
	}
	var compileErr *policy.CompileError
	if err := s.Check(ctx, "t", "allow: true"); !errors.As(err, &compileErr) {
		t.Errorf("policy without reasons: %v, want a CompileError", err)
	}
}

func TestSandboxRefusesOversizedInput(t *testing.T) {
	s := newSandbox(t, policy.SandboxOptions{})
	huge := policy.Input{Promotion: policy.Promotion{Reason: strings.Repeat("x", policy.MaxInputBytes)}}
	if _, err := s.Evaluate(context.Background(), "t", trivial, huge); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversized input: %v, want a refusal", err)
	}
}

func evaluateInProcess(source string, in policy.Input) (policy.Decision, error) {
	p, err := policy.Compile(source)
	if err != nil {
		return policy.Decision{}, err
	}
	return p.Evaluate(in)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
