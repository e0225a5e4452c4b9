package scan

import (
	"strings"
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestParseAdvisoryRefusesWhatIsNotOSV(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`not json`, "not an OSV JSON document"},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z"} {}`, "more than one JSON value"},
		{`{"modified":"2024-01-01T00:00:00Z"}`, `id "": set the advisory's identifier`},
		{`{"id":"A-1","modified":"yesterday"}`, `advisory A-1: modified "yesterday": set an RFC 3339 time`},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z","withdrawn":"soon"}`, `withdrawn "soon"`},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"name":"x"}}]}`, "affected[0].package: set both ecosystem and name"},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"x"},"ranges":[{"type":"DATES","events":[{"introduced":"0"}]}]}]}`, `affected[0].ranges[0].type "DATES": use SEMVER, ECOSYSTEM or GIT`},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"x"},"ranges":[{"type":"SEMVER","events":[]}]}]}`, "affected[0].ranges[0].events: a range needs at least an introduced event"},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"x"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1.0.0"}]}]}]}`, "affected[0].ranges[0].events[0]: set exactly one of introduced, fixed, last_affected and limit"},
		{`{"id":"A-1","modified":"2024-01-01T00:00:00Z","severity":[{"type":"CVSS_V9","score":"x"}]}`, `severity[0].type "CVSS_V9"`},
	} {
		_, err := ParseAdvisory([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.doc, err, c.want)
		}
	}
}

func TestAdvisorySeverity(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want v1alpha1.Severity
	}{
		{`{"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}`, v1alpha1.SeverityCritical},
		{`{"severity":[{"type":"CVSS_V3","score":"CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"}]}`, v1alpha1.SeverityMedium},
		{`{"severity":[{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}`, v1alpha1.SeverityCritical},
		{`{"database_specific":{"severity":"MODERATE"}}`, v1alpha1.SeverityMedium},
		{`{"severity":[{"type":"Ubuntu","score":"high"}]}`, v1alpha1.SeverityHigh},
		{`{"summary":"no severity"}`, v1alpha1.SeverityUnknown},
	} {
		a, err := ParseAdvisory([]byte(`{"id":"A-1","modified":"2024-01-01T00:00:00Z",` + strings.TrimPrefix(c.doc, "{")))
		if err != nil {
			t.Fatal(err)
		}
		if got := a.severity(osvAffected{}); got != c.want {
			t.Errorf("%s: %s, want %s", c.doc, got, c.want)
		}
	}
}
