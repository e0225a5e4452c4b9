package scan

import (
	"fmt"

	"github.com/google/osv-scalibr/semantic"
)

// version is an installed version, compared in its ecosystem's order:
// Debian epochs and tildes, Alpine's -rN and suffixes, semantic versions for
// Go and npm, PEP 440 for PyPI, Maven's ordering for Maven.
type version struct {
	ecosystem string
	parsed    semantic.Version
}

func parseVersion(v, ecosystem string) (version, error) {
	parsed, err := semantic.Parse(v, ecosystem)
	if err != nil {
		return version{}, fmt.Errorf("version %q in ecosystem %s: %w", v, ecosystem, err)
	}
	return version{ecosystem: ecosystem, parsed: parsed}, nil
}

// compare orders the installed version against other: -1, 0 or +1.
func (v version) compare(other string) (int, error) {
	c, err := v.parsed.CompareStr(other)
	if err != nil {
		return 0, fmt.Errorf("version %q in ecosystem %s: %w", other, v.ecosystem, err)
	}
	return c, nil
}

// compareVersions orders two versions of the installed version's ecosystem;
// "0", the start of every range, comes first.
func (v version) compareVersions(a, b string) (int, error) {
	switch {
	case a == b:
		return 0, nil
	case a == "0":
		return -1, nil
	case b == "0":
		return 1, nil
	}
	pa, err := parseVersion(a, v.ecosystem)
	if err != nil {
		return 0, err
	}
	return pa.compare(b)
}
