package policy_test

import (
	"fmt"
	"time"

	"github.com/stella-ops/stella/internal/policy"
)

// releaseGate is the example policy: release candidates never go to an
// environment whose order is 30 or more, and prod needs at least one
// approval from the group release-managers.
const releaseGate = `
package gate

import (
	"list"
	"strings"
)

// Schema: every version the gate accepts is semver.
input: release: version: =~"^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$"

_candidate: strings.Contains(input.release.version, "-rc")
_managers: [for a in input.approvals
	if a.decision == "approve" && list.Contains(a.groups, "release-managers") {a.approver}]

reasons: [
	if _candidate && input.environment.order >= 30 {
		"release candidate \(input.release.version) cannot go to \(input.environment.name) (order \(input.environment.order) >= 30)"
	},
	if input.environment.name == "prod" && len(_managers) == 0 {
		"prod needs an approval from a member of release-managers"
	},
]
allow: len(reasons) == 0
`

func Example() {
	program, err := policy.Compile(releaseGate)
	if err != nil {
		fmt.Println(err)
		return
	}
	in := policy.Input{
		Release:     policy.Release{Name: "shop-2.4.0-rc1", Version: "2.4.0-rc1"},
		Environment: policy.Environment{Name: "prod", Order: 30},
		Promotion:   policy.Promotion{Name: "shop-to-prod", RequestedBy: "bob"},
		Approvals:   []policy.Approval{{Approver: "ann", Groups: []string{"developers"}, Decision: "approve"}},
		Clock:       policy.ClockAt(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)),
	}
	show := func(d policy.Decision, err error) {
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Println(d.Allow, d.Code)
		for _, r := range d.Reasons {
			fmt.Println("  " + r)
		}
	}

	show(program.Evaluate(in))

	in.Release.Version = "2.4.0"
	in.Approvals = append(in.Approvals, policy.Approval{Approver: "cho", Groups: []string{"release-managers"}, Decision: "approve"})
	show(program.Evaluate(in))

	in.Release.Version = "2.4"
	show(program.Evaluate(in))

	// Output:
	// false PolicyDenied
	//   prod needs an approval from a member of release-managers
	//   release candidate 2.4.0-rc1 cannot go to prod (order 30 >= 30)
	// true PolicyAllowed
	// false PolicyInputRejected
	//   input rejected by the policy schema: input.release.version: invalid value "2.4" (out of bound =~"^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$") (policy.cue:10:26)
}
