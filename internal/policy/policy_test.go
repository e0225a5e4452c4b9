package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stella-ops/stella/internal/policy"
)

// stageInput is a complete, ordinary input: a final release going to stage.
func stageInput() policy.Input {
	return policy.Input{
		Release: policy.Release{
			Name:    "shop-2.3.1",
			Version: "2.3.1",
			Components: []policy.Component{
				{Name: "api", Image: "registry.local/shop/api@sha256:" + strings.Repeat("a", 64), Digest: "sha256:" + strings.Repeat("a", 64), Role: "primary"},
				{Name: "worker", Image: "registry.local/shop/worker@sha256:" + strings.Repeat("b", 64), Digest: "sha256:" + strings.Repeat("b", 64), Role: "sidecar"},
			},
			Source: policy.Source{Repository: "https://git.local/shop", Commit: "0123abc", BuildURL: "https://ci.local/1"},
		},
		Environment: policy.Environment{Name: "stage", Order: 20},
		Promotion:   policy.Promotion{Name: "shop-2.3.1-to-stage", RequestedBy: "bob", Reason: "weekly"},
		Approvals: []policy.Approval{
			{Approver: "ann", Groups: []string{"release-managers"}, Decision: "approve"},
			{Approver: "dan", Groups: []string{"developers"}, Decision: "reject"},
		},
		ScanReports: []policy.ScanReport{
			{Image: "registry.local/shop/api@sha256:" + strings.Repeat("a", 64), MaxSeverity: "Medium", Counts: policy.SeverityCounts{Medium: 2, Low: 5}},
		},
		Clock: policy.ClockAt(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)),
	}
}

func with(edit func(*policy.Input)) policy.Input {
	in := stageInput()
	edit(&in)
	return in
}

func mustCompile(t testing.TB, source string) *policy.Program {
	t.Helper()
	p, err := policy.Compile(source)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name   string
		source string
		want   []string // substrings of the error
	}{
		{"syntax error", "allow: true\nreasons: [\n", []string{"expected ']'", "policy.cue:2:12"}},
		{"unknown reference", "allow: maybe\nreasons: []\n", []string{`reference "maybe" not found`, "policy.cue:1:8"}},
		{"self conflict", "_limit: 1 & 2\nallow: true\nreasons: []\n", []string{"_limit: conflicting values", "policy.cue:1:9"}},
		{"no allow", "reasons: []\n", []string{`must define top-level "allow"`}},
		{"no reasons", "allow: true\n", []string{`must define top-level "reasons"`}},
		{"optional allow", "allow?: bool\nreasons: []\n", []string{`must define top-level "allow"`}},
		{"allow not bool", "allow: \"yes\"\nreasons: []\n", []string{"allow: conflicting values", "policy.cue:1:8"}},
		{"reasons not a list", "allow: true\nreasons: \"none\"\n", []string{"reasons: conflicting values", "policy.cue:2:10"}},
		{"reasons of ints", "allow: true\nreasons: [1]\n", []string{"reasons.0: conflicting values", "policy.cue:2:11"}},
		{"allow typed by the input schema", "input: environment: order: int\nallow: input.environment.order\nreasons: []\n", []string{"allow: conflicting values", "policy.cue:2:8"}},
		{"non-standard import", "import \"example.com/lib\"\nallow: lib.ok\nreasons: []\n", []string{`"example.com/lib"`, "policy.cue:"}},
		{"file embedding", "@extern(embed)\n\npackage gate\n\n_key: _ @embed(file=\"/etc/hostname\")\nallow: true\nreasons: []\n", []string{"cannot embed files"}},
		{"lists nested too deep", "_x: " + strings.Repeat("[", policy.MaxNesting+1) + strings.Repeat("]", policy.MaxNesting+1) + "\nallow: true\nreasons: []\n", []string{"nested more than 16 deep", "policy.cue:1:"}},
		{"for clauses nested too deep", "_l: [1]\n_x: [for a in _l " + strings.Repeat("for b in _l ", policy.MaxNesting) + "{a}]\nallow: true\nreasons: []\n", []string{"nested more than 16 deep", "policy.cue:2:6"}},
		{"too long", "allow: true\nreasons: []\n//" + strings.Repeat("x", policy.MaxSourceBytes), []string{"over the limit of 65536"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Compile(tt.source)
			if err == nil {
				t.Fatal("Compile succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name      string
		source    string
		input     policy.Input
		wantAllow bool
		wantCode  policy.Code
		// wantReasons holds one substring per expected reason, in order.
		wantReasons []string
		// wantErr, if set, is a substring of the expected error.
		wantErr string
	}{{
		name:      "allow",
		source:    releaseGate,
		input:     stageInput(),
		wantAllow: true, wantCode: policy.CodeAllowed, wantReasons: []string{},
	}, {
		name:   "deny with reasons, sorted",
		source: releaseGate,
		input: with(func(in *policy.Input) {
			in.Release.Version = "2.4.0-rc1"
			in.Environment = policy.Environment{Name: "prod", Order: 30}
			in.Approvals = nil
		}),
		wantCode: policy.CodeDenied,
		wantReasons: []string{
			"prod needs an approval from a member of release-managers",
			"release candidate 2.4.0-rc1 cannot go to prod (order 30 >= 30)",
		},
	}, {
		name:   "release candidate below order 30 is allowed",
		source: releaseGate,
		input: with(func(in *policy.Input) {
			in.Release.Version = "2.4.0-rc1"
		}),
		wantAllow: true, wantCode: policy.CodeAllowed, wantReasons: []string{},
	}, {
		name:   "a rejection is not an approval",
		source: releaseGate,
		input: with(func(in *policy.Input) {
			in.Environment = policy.Environment{Name: "prod", Order: 30}
			in.Approvals = []policy.Approval{{Approver: "ann", Groups: []string{"release-managers"}, Decision: "reject"}}
		}),
		wantCode:    policy.CodeDenied,
		wantReasons: []string{"prod needs an approval from a member of release-managers"},
	}, {
		name:        "reasons deduplicated and sorted",
		source:      "allow: false\nreasons: [\"zeta\", \"alpha\", \"zeta\", \"Beta\"]\n",
		input:       stageInput(),
		wantCode:    policy.CodeDenied,
		wantReasons: []string{"Beta", "alpha", "zeta"},
	}, {
		name:        "deny without a reason gets one",
		source:      "allow: false\nreasons: []\n",
		input:       stageInput(),
		wantCode:    policy.CodeDenied,
		wantReasons: []string{"policy denied without giving a reason"},
	}, {
		name:      "allow keeps its notes",
		source:    "allow: true\nreasons: [\"requested by \\(input.promotion.requestedBy)\"]\n",
		input:     stageInput(),
		wantAllow: true, wantCode: policy.CodeAllowed,
		wantReasons: []string{"requested by bob"},
	}, {
		name:        "schema: version does not match the regex",
		source:      releaseGate,
		input:       with(func(in *policy.Input) { in.Release.Version = "v2.3" }),
		wantCode:    policy.CodeInputRejected,
		wantReasons: []string{`input rejected by the policy schema: input.release.version: invalid value "v2.3"`},
	}, {
		name:        "schema: field of the wrong type",
		source:      "input: environment: order: string\nallow: true\nreasons: []\n",
		input:       stageInput(),
		wantCode:    policy.CodeInputRejected,
		wantReasons: []string{"input.environment.order: conflicting values string and 20 (mismatched types string and int) (policy.cue:1:28)"},
	}, {
		name:        "schema: required field the document lacks",
		source:      "input: release: signedBy: string\nallow: true\nreasons: []\n",
		input:       stageInput(),
		wantCode:    policy.CodeInputRejected,
		wantReasons: []string{"input.release.signedBy: incomplete value string (policy.cue:1:27)"},
	}, {
		name:        "schema: each error is a reason",
		source:      "input: {environment: order: <10, release: name: =~\"^api-\"}\nallow: true\nreasons: []\n",
		input:       stageInput(),
		wantCode:    policy.CodeInputRejected,
		wantReasons: []string{"input.environment.order: invalid value 20", "input.release.name: invalid value \"shop-2.3.1\""},
	}, {
		name:        "incomplete allow",
		source:      "_limit: int\nallow: input.environment.order < _limit\nreasons: []\n",
		input:       stageInput(),
		wantCode:    policy.CodeUndecided,
		wantReasons: []string{"policy did not decide: allow is not concrete: allow: non-concrete value int"},
	}, {
		name:        "misspelt input field",
		source:      "allow: input.enviroment.order < 30\nreasons: [\"kept\"]\n",
		input:       stageInput(),
		wantCode:    policy.CodeUndecided,
		wantReasons: []string{"kept", "policy did not decide: allow is not concrete: allow: undefined field: enviroment (policy.cue:1:14)"},
	}, {
		name:        "ambiguous allow",
		source:      "allow: true | false\nreasons: []\n",
		input:       stageInput(),
		wantCode:    policy.CodeUndecided,
		wantReasons: []string{"policy did not decide: allow is not concrete"},
	}, {
		name:        "incomplete reasons",
		source:      "_m: {dev: \"fine\"}\nallow: true\nreasons: [_m[input.environment.name]]\n",
		input:       stageInput(),
		wantCode:    policy.CodeUndecided,
		wantReasons: []string{"policy did not decide: reasons is not concrete: reasons.0: undefined field: stage"},
	}, {
		name:    "policy failure: reasons holds a struct",
		source:  "allow: false\nreasons: [for a in input.approvals {a}]\n",
		input:   stageInput(),
		wantErr: "reasons.0: conflicting values string and {",
	}, {
		name:    "policy failure: index out of range",
		source:  "allow: input.scanReports[3].maxSeverity == \"None\"\nreasons: []\n",
		input:   stageInput(),
		wantErr: "index out of range",
	}, {
		name:      "nil lists encode as []",
		source:    "allow: len(input.release.components) + len(input.scanReports) + len(input.approvals[0].groups) == 0\nreasons: []\n",
		input:     policy.Input{Approvals: []policy.Approval{{Approver: "ann"}}},
		wantAllow: true, wantCode: policy.CodeAllowed, wantReasons: []string{},
	}, {
		name:   "clock is UTC whole seconds",
		source: "allow: input.clock.now == \"2026-03-04T04:06:07Z\"\nreasons: []\n",
		input: with(func(in *policy.Input) {
			in.Clock = policy.ClockAt(time.Date(2026, 3, 4, 5, 6, 7, 999, time.FixedZone("CET", 3600)))
		}),
		wantAllow: true, wantCode: policy.CodeAllowed, wantReasons: []string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustCompile(t, tt.source).Evaluate(tt.input)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Evaluate error = %v, want one containing %q (decision %+v)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if got.Allow != tt.wantAllow || got.Code != tt.wantCode {
				t.Errorf("got allow=%v code=%s, want allow=%v code=%s (reasons %q)", got.Allow, got.Code, tt.wantAllow, tt.wantCode, got.Reasons)
			}
			if got.Reasons == nil {
				t.Error("Reasons is nil, want a non-nil slice")
			}
			if len(got.Reasons) != len(tt.wantReasons) {
				t.Fatalf("got reasons %q, want %d matching %q", got.Reasons, len(tt.wantReasons), tt.wantReasons)
			}
			for i, w := range tt.wantReasons {
				if !strings.Contains(got.Reasons[i], w) {
					t.Errorf("reason %d = %q, want it to contain %q", i, got.Reasons[i], w)
				}
			}
		})
	}
}

func TestEvaluateLeavesTheInputAlone(t *testing.T) {
	in := policy.Input{Approvals: []policy.Approval{{Approver: "ann"}}}
	if _, err := mustCompile(t, "allow: true\nreasons: []\n").Evaluate(in); err != nil {
		t.Fatal(err)
	}
	if in.Approvals[0].Groups != nil || in.ScanReports != nil {
		t.Errorf("Evaluate modified its input: %+v", in)
	}
}

func TestDigest(t *testing.T) {
	// sha256 of the empty string, a published test vector.
	if got, want := policy.Digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("Digest(\"\") = %s, want %s", got, want)
	}
	sum := sha256.Sum256([]byte(releaseGate))
	want := "sha256:" + hex.EncodeToString(sum[:])
	for range 2 {
		if got := mustCompile(t, releaseGate).Digest(); got != want {
			t.Errorf("Digest() = %s, want %s", got, want)
		}
	}
	// One more byte is another policy, even when it means the same.
	if mustCompile(t, releaseGate+"\n").Digest() == want {
		t.Error("different sources have the same digest")
	}
}

// decisions evaluates inputs in order on p and returns each decision's JSON.
func decisions(t testing.TB, p *policy.Program, inputs []policy.Input) []string {
	out := make([]string, len(inputs))
	for i, in := range inputs {
		d, err := p.Evaluate(in)
		if err != nil {
			t.Errorf("Evaluate input %d: %v", i, err)
			continue
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Errorf("marshal decision: %v", err)
		}
		out[i] = string(b)
	}
	return out
}

var mixedInputs = []policy.Input{
	stageInput(),
	with(func(in *policy.Input) {
		in.Release.Version = "2.4.0-rc1"
		in.Environment = policy.Environment{Name: "prod", Order: 30}
	}),
	with(func(in *policy.Input) { in.Release.Version = "latest" }),
	with(func(in *policy.Input) { in.Environment = policy.Environment{Name: "prod", Order: 30} }),
}

// TestEvaluateIsDeterministic checks that a Program keeps no state between
// evaluations: a long-used Program answers exactly like fresh ones.
func TestEvaluateIsDeterministic(t *testing.T) {
	var fresh []string
	for _, in := range mixedInputs {
		fresh = append(fresh, decisions(t, mustCompile(t, releaseGate), []policy.Input{in})...)
	}
	used := mustCompile(t, releaseGate)
	for round := range 3 {
		if got := decisions(t, used, mixedInputs); !reflect.DeepEqual(got, fresh) {
			t.Fatalf("round %d on a reused program:\n%q\nfresh programs:\n%q", round, got, fresh)
		}
	}
}

func TestEvaluateConcurrently(t *testing.T) {
	p := mustCompile(t, releaseGate)
	want := decisions(t, p, mixedInputs)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if got := decisions(t, p, mixedInputs); !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent decisions differ:\n%q\nwant\n%q", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestClockAt(t *testing.T) {
	got := policy.ClockAt(time.Date(2026, 12, 31, 23, 30, 59, 123456789, time.FixedZone("X", -2*3600)))
	if want := "2027-01-01T01:30:59Z"; got.Now != want {
		t.Errorf("ClockAt = %q, want %q", got.Now, want)
	}
}

// benchmarkInput is a prod promotion of a three-image release candidate with
// three approvals and three scan reports: a denied decision, the longer path.
func benchmarkInput() policy.Input {
	in := with(func(in *policy.Input) {
		in.Release.Version = "2.4.0-rc1"
		in.Environment = policy.Environment{Name: "prod", Order: 30}
		in.Release.Components = append(in.Release.Components, policy.Component{Name: "migrate", Image: "registry.local/shop/migrate@sha256:" + strings.Repeat("c", 64), Digest: "sha256:" + strings.Repeat("c", 64), Role: "migration"})
		in.Approvals = append(in.Approvals, policy.Approval{Approver: "eve", Groups: []string{"qa", "developers"}, Decision: "approve"})
		in.ScanReports = append(in.ScanReports, in.ScanReports[0], in.ScanReports[0])
	})
	return in
}

func BenchmarkEvaluate(b *testing.B) {
	p := mustCompile(b, releaseGate)
	in := benchmarkInput()
	for b.Loop() {
		if _, err := p.Evaluate(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluateParallel(b *testing.B) {
	p := mustCompile(b, releaseGate)
	in := benchmarkInput()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Evaluate(in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	for b.Loop() {
		mustCompile(b, releaseGate)
	}
}
