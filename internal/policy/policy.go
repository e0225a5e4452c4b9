package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/ast/astutil"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	cuejson "cuelang.org/go/encoding/json"
)

// MaxSourceBytes bounds a policy's source in bytes. The Gate API bounds it at
// the same number of characters, so a source with multi-byte characters can
// pass admission and still be refused here, which stalls the Gate.
const MaxSourceBytes = 64 << 10

// File names CUE reports in error positions. Only positions in the policy
// source are kept in messages: they point the author at a line; positions
// in the generated input document would point nowhere useful.
const (
	sourceFile = "policy.cue"
	inputFile  = "input.json"
)

// outputSchema is unified into every policy, so a policy whose allow or
// reasons has the wrong type fails to compile (or, when the type depends on
// the input, fails to evaluate) instead of being read loosely.
const outputSchema = `
allow:   bool
reasons: [...string]
`

var (
	inputPath   = cue.MakePath(cue.Str("input"))
	allowPath   = cue.MakePath(cue.Str("allow"))
	reasonsPath = cue.MakePath(cue.Str("reasons"))
)

// Code classifies a Decision with a stable, sortable reason code.
type Code string

const (
	// CodeAllowed: the policy evaluated allow to true.
	CodeAllowed Code = "PolicyAllowed"
	// CodeDenied: the policy evaluated allow to false.
	CodeDenied Code = "PolicyDenied"
	// CodeInputRejected: the input does not satisfy the policy's schema
	// for `input`; the policy was not consulted further.
	CodeInputRejected Code = "PolicyInputRejected"
	// CodeUndecided: allow or reasons is not concrete for this input.
	CodeUndecided Code = "PolicyUndecided"
)

// Decision is the outcome of evaluating a policy against one input.
type Decision struct {
	// Allow is true only when the policy concretely evaluated allow to true.
	Allow bool `json:"allow"`
	// Code says why Allow has its value.
	Code Code `json:"code"`
	// Reasons are the policy's reasons plus any added by the engine, sorted
	// and without duplicates; never nil. A deny always has at least one.
	Reasons []string `json:"reasons"`
}

// Program is a compiled policy. Compile once per policy source and reuse;
// Evaluate may be called from several goroutines.
type Program struct {
	digest string

	// mu serialises evaluations. CUE v0.17.1 documents Values as safe for
	// concurrent use (upstream fixed the known races, cue-lang/cue#2733 and
	// #4351, shortly before that release), but an evaluation race here would
	// mean a wrong decision, and one evaluation costs well under a
	// millisecond, so a lock per Program is the cheap, certain choice.
	mu    sync.Mutex
	ctx   *cue.Context
	value cue.Value
}

// Digest returns "sha256:<hex>" of the source bytes, as evidence records it.
func Digest(source string) string {
	sum := sha256.Sum256([]byte(source))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Compile compiles a policy. It fails when the source is over
// MaxSourceBytes, does not compile, does not define allow and reasons at
// its top level, or gives them a type other than bool and [...string]. The
// error message carries CUE's message with policy.cue:line:column.
func Compile(source string) (*Program, error) {
	if len(source) > MaxSourceBytes {
		return nil, fmt.Errorf("policy source is %d bytes, over the limit of %d", len(source), MaxSourceBytes)
	}
	// The evaluator version is pinned rather than taken from CUE_EXPERIMENT,
	// so the process environment cannot change a decision.
	ctx := cuecontext.New(cuecontext.EvaluatorVersion(cuecontext.EvalV3))
	f, err := parser.ParseFile(sourceFile, source)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %s", strings.Join(describe(err), "; "))
	}
	if err := checkNesting(f); err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	declareInput(f)
	v := ctx.BuildFile(f)
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("compile policy: %s", strings.Join(describe(err), "; "))
	}
	for _, name := range []string{"allow", "reasons"} {
		if !v.LookupPath(cue.MakePath(cue.Str(name))).Exists() {
			return nil, fmt.Errorf("compile policy: %s: the policy must define top-level %q", sourceFile, name)
		}
	}
	v = v.Unify(ctx.CompileString(outputSchema, cue.Filename("output-schema.cue")))
	// Without cue.Concrete, Validate reports only conflicts: a policy is
	// naturally incomplete until it is given an input.
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("compile policy: %s", strings.Join(describe(err), "; "))
	}
	return &Program{digest: Digest(source), ctx: ctx, value: v}, nil
}

// MaxNesting bounds how deeply a policy nests structs, lists and the for
// clauses of comprehensions (each for clause multiplies the work of those
// inside it). Policies read a small document and need a handful of levels.
const MaxNesting = 16

// checkNesting refuses a source nested deeper than MaxNesting, naming the
// position where it first goes too deep.
func checkNesting(f *ast.File) error {
	depth, deepest := 0, token.NoPos
	levels := func(n ast.Node) int {
		switch n := n.(type) {
		case *ast.StructLit, *ast.ListLit:
			return 1
		case *ast.Comprehension:
			fors := 0
			for _, c := range n.Clauses {
				if _, ok := c.(*ast.ForClause); ok {
					fors++
				}
			}
			return fors
		}
		return 0
	}
	ast.Walk(f, func(n ast.Node) bool {
		depth += levels(n)
		if depth > MaxNesting && !deepest.IsValid() {
			deepest = n.Pos()
		}
		return !deepest.IsValid()
	}, func(n ast.Node) {
		depth -= levels(n)
	})
	if deepest.IsValid() {
		return fmt.Errorf("%s:%d:%d: structs, lists and comprehension for clauses are nested more than %d deep; flatten the policy", sourceFile, deepest.Line(), deepest.Column(), MaxNesting)
	}
	return nil
}

// declareInput adds `input: _` to a policy that does not declare input
// itself: without it, a policy that only reads input fails to compile with
// `reference "input" not found`. The parser has already tried to resolve
// references, so resolve again to bind the ones it left to the new field,
// and drop them from the file's unresolved list, which the builder would
// otherwise use to unbind them.
func declareInput(f *ast.File) {
	for _, d := range f.Decls {
		if field, ok := d.(*ast.Field); ok {
			if name, _, _ := ast.LabelName(field.Label); name == "input" {
				return
			}
		}
	}
	f.Decls = append(f.Decls, &ast.Field{Label: ast.NewIdent("input"), Value: ast.NewIdent("_")})
	astutil.Resolve(f, func(token.Pos, string, ...any) {})
	f.Unresolved = slices.DeleteFunc(f.Unresolved, func(id *ast.Ident) bool { return id.Node != nil })
}

// Digest returns the digest of the program's source; see the package Digest.
func (p *Program) Digest() string { return p.digest }

// Evaluate decides one input. A deny is a Decision, not an error: that covers
// an input the policy's schema rejects and a policy that cannot decide. An
// error means the policy itself is broken for this input (see the package
// documentation); callers must treat it as a deny as well.
func (p *Program) Evaluate(in Input) (Decision, error) {
	data, err := in.encode()
	if err != nil {
		return Decision{}, err
	}
	return p.evaluateJSON(data)
}

// evaluateJSON is Evaluate on an input already encoded by Input.encode.
func (p *Program) evaluateJSON(data []byte) (Decision, error) {
	expr, err := cuejson.Extract(inputFile, data)
	if err != nil {
		return Decision{}, fmt.Errorf("parse policy input: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()

	v := p.value.FillPath(inputPath, p.ctx.BuildExpr(expr))

	// The input is checked on its own, and concretely, first: any error under
	// `input` is the input failing the policy's schema, whatever its CUE kind.
	if err := v.LookupPath(inputPath).Validate(cue.Concrete(true)); err != nil {
		return deny(CodeInputRejected, prefix("input rejected by the policy schema: ", describe(err))), nil
	}
	// A conflict anywhere else is the policy contradicting itself.
	if err := v.Validate(); err != nil {
		return Decision{}, fmt.Errorf("evaluate policy: %s", strings.Join(describe(err), "; "))
	}

	allow, allowErr := v.LookupPath(allowPath).Bool()
	reasonsValue := v.LookupPath(reasonsPath)
	if err := reasonsValue.Validate(cue.Concrete(true)); err != nil {
		return deny(CodeUndecided, prefix("policy did not decide: reasons is not concrete: ", describe(err))), nil
	}
	var reasons []string
	if err := reasonsValue.Decode(&reasons); err != nil {
		return Decision{}, fmt.Errorf("decode policy reasons: %w", err)
	}
	if allowErr != nil {
		return deny(CodeUndecided, append(reasons, prefix("policy did not decide: allow is not concrete: ", describe(allowErr))...)), nil
	}
	if !allow {
		if len(reasons) == 0 {
			reasons = []string{"policy denied without giving a reason"}
		}
		return deny(CodeDenied, reasons), nil
	}
	return Decision{Allow: true, Code: CodeAllowed, Reasons: sortedUnique(reasons)}, nil
}

func deny(code Code, reasons []string) Decision {
	return Decision{Allow: false, Code: code, Reasons: sortedUnique(reasons)}
}

// sortedUnique sorts by bytes, drops duplicates and never returns nil, so a
// decision has exactly one encoding.
func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return nonNil(slices.Compact(s))
}

func prefix(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// describe renders a CUE error as one sorted line per underlying error:
// "path: message (policy.cue:line:col, ...)". The text depends only on the
// source and the input, so it is as deterministic as the decision.
func describe(err error) []string {
	var lines []string
	for _, e := range cueerrors.Errors(err) {
		line := cueerrors.String(e)
		var at []string
		for _, pos := range cueerrors.Positions(e) {
			if pos.Filename() == sourceFile {
				at = append(at, fmt.Sprintf("%s:%d:%d", sourceFile, pos.Line(), pos.Column()))
			}
		}
		if at = slices.Compact(at); len(at) > 0 {
			line += " (" + strings.Join(at, ", ") + ")"
		}
		lines = append(lines, line)
	}
	return sortedUnique(lines)
}
