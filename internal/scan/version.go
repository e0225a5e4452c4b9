package scan

import (
	"fmt"
	"slices"

	"github.com/google/osv-scalibr/semantic"
)

// version is a version parsed in its ecosystem's order: Debian epochs and
// tildes, Alpine's -rN and suffixes, semantic versions for Go and npm,
// PEP 440 for PyPI, Maven's ordering for Maven.
type version struct {
	raw    string
	parsed semantic.Version
}

func parseVersion(v, ecosystem string) (version, error) {
	parsed, err := semantic.Parse(v, ecosystem)
	if err != nil {
		return version{}, fmt.Errorf("version %q in ecosystem %s: %w", v, ecosystem, err)
	}
	return version{raw: v, parsed: parsed}, nil
}

// lazyVersion is an installed version parsed when first needed.
type lazyVersion struct {
	raw, ecosystem string
	parsed         *version
	err            error
}

func (l *lazyVersion) get() (version, error) {
	if l.parsed == nil && l.err == nil {
		v, err := parseVersion(l.raw, l.ecosystem)
		l.parsed, l.err = &v, err
	}
	return *l.parsed, l.err
}

// compare orders two versions parsed in one ecosystem: -1, 0 or +1.
func (v version) compare(w version) int {
	c, err := v.parsed.Compare(w.parsed)
	if err != nil {
		panic(err) // both were parsed in the same ecosystem
	}
	return c
}

// event is one event of an OSV range, its version parsed.
type event struct {
	kind    eventKind
	version version
	// zero is the introduced "0" that starts every range: below everything.
	zero bool
}

type eventKind int

const (
	introduced eventKind = iota
	fixed
	lastAffected
	limit
)

// matcher is an affected entry of an advisory made ready for matching in
// its ecosystem: versions parsed and range events sorted once, however many
// packages it is matched against.
type matcher struct {
	versions []version
	ranges   [][]event
	// err is a version of the entry that does not parse in the ecosystem.
	err error
}

// prepare parses and sorts an affected entry's versions for ecosystem (the
// part before any ":").
func prepare(aff osvAffected, ecosystem string) *matcher {
	m := &matcher{}
	for _, raw := range aff.Versions {
		v, err := parseVersion(raw, ecosystem)
		if err != nil {
			return &matcher{err: err}
		}
		m.versions = append(m.versions, v)
	}
	for _, r := range aff.Ranges {
		if r.Type == "GIT" {
			continue // commits, not versions: nothing to compare an installed version with
		}
		events := make([]event, 0, len(r.Events))
		for _, e := range r.Events {
			ev := event{}
			var raw string
			switch {
			case e.Introduced != "":
				ev.kind, raw = introduced, e.Introduced
				ev.zero = raw == "0"
			case e.Fixed != "":
				ev.kind, raw = fixed, e.Fixed
			case e.LastAffected != "":
				ev.kind, raw = lastAffected, e.LastAffected
			default:
				ev.kind, raw = limit, e.Limit
			}
			if ev.zero {
				ev.version.raw = raw
			} else {
				v, err := parseVersion(raw, ecosystem)
				if err != nil {
					return &matcher{err: err}
				}
				ev.version = v
			}
			events = append(events, ev)
		}
		slices.SortStableFunc(events, func(a, b event) int {
			switch {
			case a.zero && b.zero:
				return 0
			case a.zero:
				return -1
			case b.zero:
				return 1
			}
			return a.version.compare(b.version)
		})
		m.ranges = append(m.ranges, events)
	}
	return m
}

// affects tells whether an installed version is affected, and the first
// version above it that fixes it, if the advisory names one. A range is
// evaluated as the OSV schema describes: events in version order, the last
// introduced at or below the version opens it, a fixed at or below it (or a
// last_affected below it) closes it, and a limit caps it.
func (m *matcher) affects(installed version) (affected bool, fixedIn string) {
	for _, v := range m.versions {
		if installed.compare(v) == 0 {
			affected = true
		}
	}
	for _, events := range m.ranges {
		in, capped, fix := false, false, ""
		for _, e := range events {
			c := 1
			if !e.zero {
				c = installed.compare(e.version)
			}
			switch {
			case e.kind == limit:
				capped = capped || c >= 0
			case e.kind == introduced && c >= 0:
				in = true
			case e.kind == fixed && c >= 0, e.kind == lastAffected && c > 0:
				in = false
			case e.kind == fixed && in && fix == "":
				fix = e.version.raw
			}
		}
		if in && !capped {
			affected = true
			if fixedIn == "" {
				fixedIn = fix
			}
		}
	}
	return affected, fixedIn
}
