package scan

import (
	"testing"
)

// TestRangeOrdering evaluates OSV ranges on installed versions, in each
// ecosystem's own version order.
func TestRangeOrdering(t *testing.T) {
	for _, c := range []struct {
		name, ecosystem, installed string
		events                     []osvEvent
		affected                   bool
		fixedIn                    string
	}{
		{"Debian tilde sorts before the release", "Debian", "3.0.11-1~deb12u1", []osvEvent{{Introduced: "0"}, {Fixed: "3.0.11-1~deb12u2"}}, true, "3.0.11-1~deb12u2"},
		{"Debian fixed version itself is fixed", "Debian", "3.0.11-1~deb12u2", []osvEvent{{Introduced: "0"}, {Fixed: "3.0.11-1~deb12u2"}}, false, ""},
		{"Debian tilde before the plain upload", "Debian", "3.0.11-1", []osvEvent{{Introduced: "0"}, {Fixed: "3.0.11-1~deb12u2"}}, false, ""},
		{"Debian epoch outranks the upstream version", "Debian", "1:1.2.13.dfsg-1", []osvEvent{{Introduced: "0"}, {Fixed: "1.9.0-1"}}, false, ""},
		{"Debian epoch in the fixed version", "Debian", "1:1.2.13.dfsg-1", []osvEvent{{Introduced: "0"}, {Fixed: "1:1.2.13.dfsg-2"}}, true, "1:1.2.13.dfsg-2"},
		{"Alpine release numbers compare as numbers", "Alpine", "1.2.3-r9", []osvEvent{{Introduced: "0"}, {Fixed: "1.2.3-r10"}}, true, "1.2.3-r10"},
		{"Alpine last_affected is affected", "Alpine", "1.36.1-r4", []osvEvent{{Introduced: "0"}, {LastAffected: "1.36.1-r4"}}, true, ""},
		{"Alpine after last_affected", "Alpine", "1.36.1-r5", []osvEvent{{Introduced: "0"}, {LastAffected: "1.36.1-r4"}}, false, ""},
		{"Go below the introduced version", "Go", "1.2.0", []osvEvent{{Introduced: "1.3.0"}, {Fixed: "1.3.5"}}, false, ""},
		{"Go in a second range", "Go", "1.26.8", []osvEvent{{Introduced: "0"}, {Fixed: "1.25.9"}, {Introduced: "1.26.0"}, {Fixed: "1.26.9"}}, true, "1.26.9"},
		{"Go between two ranges", "Go", "1.25.10", []osvEvent{{Introduced: "0"}, {Fixed: "1.25.9"}, {Introduced: "1.26.0"}, {Fixed: "1.26.9"}}, false, ""},
		{"npm prerelease before its release", "npm", "4.17.21-beta.1", []osvEvent{{Introduced: "0"}, {Fixed: "4.17.21"}}, true, "4.17.21"},
		{"npm events out of order", "npm", "2.0.0", []osvEvent{{Fixed: "2.1.0"}, {Introduced: "2.0.0"}}, true, "2.1.0"},
		{"PyPI release candidate before the release", "PyPI", "2.31.0rc1", []osvEvent{{Introduced: "0"}, {Fixed: "2.31.0"}}, true, "2.31.0"},
		{"PyPI post release after the release", "PyPI", "2.31.0.post1", []osvEvent{{Introduced: "0"}, {Fixed: "2.31.0"}}, false, ""},
		{"PyPI 2.10 after 2.9", "PyPI", "2.10.0", []osvEvent{{Introduced: "0"}, {Fixed: "2.9.0"}}, false, ""},
		{"Maven qualifiers before the release", "Maven", "2.15.0-rc1", []osvEvent{{Introduced: "2.0"}, {Fixed: "2.15.0"}}, true, "2.15.0"},
		{"Maven final equals the release", "Maven", "2.15.0.Final", []osvEvent{{Introduced: "2.0"}, {Fixed: "2.15.0"}}, false, ""},
		{"limit caps a range", "Go", "2.0.0", []osvEvent{{Introduced: "0"}, {Limit: "1.5.0"}}, false, ""},
		{"limit caps an introduced above it", "Go", "2.0.0", []osvEvent{{Introduced: "0"}, {Limit: "1.5.0"}, {Introduced: "1.8.0"}}, false, ""},
		{"below the limit", "Go", "1.2.0", []osvEvent{{Introduced: "0"}, {Limit: "1.5.0"}}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := parseVersion(c.installed, c.ecosystem)
			if err != nil {
				t.Fatal(err)
			}
			m := prepare(osvAffected{Ranges: []osvRange{{Type: "ECOSYSTEM", Events: c.events}}}, c.ecosystem)
			if m.err != nil {
				t.Fatal(m.err)
			}
			affected, fixedIn := m.affects(v)
			if affected != c.affected || fixedIn != c.fixedIn {
				t.Errorf("%s %s in %+v: affected %v, fixed in %q; want %v, %q", c.ecosystem, c.installed, c.events, affected, fixedIn, c.affected, c.fixedIn)
			}
		})
	}
}

func TestEcosystemOf(t *testing.T) {
	for _, c := range []struct {
		pkg               Package
		os                OSRelease
		ecosystem, distro string
	}{
		{Package{Type: TypeDebian}, OSRelease{ID: "debian", VersionID: "12"}, "Debian:12", "debian-12"},
		{Package{Type: TypeDebian}, OSRelease{ID: "ubuntu", VersionID: "22.04"}, "Ubuntu:22.04", "ubuntu-22.04"},
		{Package{Type: TypeDebian}, OSRelease{ID: "debian"}, "Debian", "debian"},
		{Package{Type: TypeAlpine}, OSRelease{ID: "alpine", VersionID: "3.20.3"}, "Alpine:v3.20", "alpine-3.20.3"},
		{Package{Type: TypeGo}, OSRelease{ID: "alpine", VersionID: "3.20.3"}, "Go", ""},
		{Package{Type: TypePyPI}, OSRelease{}, "PyPI", ""},
		{Package{Type: TypeRPM}, OSRelease{ID: "rocky", VersionID: "9.3"}, "Rocky Linux:9", "rocky-9.3"},
		{Package{Type: TypeRPM}, OSRelease{ID: "rhel", VersionID: "8.10"}, "Red Hat:enterprise_linux:8", "rhel-8.10"},
		{Package{Type: TypeRPM}, OSRelease{ID: "opensuse-leap", VersionID: "15.5"}, "openSUSE:Leap 15.5", "opensuse-leap-15.5"},
		{Package{Type: TypeRPM}, OSRelease{ID: "fedora", VersionID: "40"}, "", "fedora-40"},
	} {
		if e, d := ecosystemOf(c.pkg, c.os); e != c.ecosystem || (c.pkg.Type == TypeDebian || c.pkg.Type == TypeAlpine || c.pkg.Type == TypeRPM) && d != c.distro {
			t.Errorf("%s on %+v: %s %s, want %s %s", c.pkg.Type, c.os, e, d, c.ecosystem, c.distro)
		}
	}
	for _, c := range []struct {
		advisory, pkg string
		applies       bool
	}{
		{"Debian:12", "Debian:12", true},
		{"Debian:11", "Debian:12", false},
		{"Ubuntu:22.04:LTS", "Ubuntu:22.04", true},
		{"Red Hat:enterprise_linux:9::appstream", "Red Hat:enterprise_linux:9", true},
		{"Red Hat:enterprise_linux:9::appstream", "Red Hat:enterprise_linux:8", false},
		{"Ubuntu:22.04:LTS", "Ubuntu", false},
		{"Alpine:v3.20", "Alpine:v3.2", false},
		{"Go", "Go", true},
	} {
		if got := appliesTo(c.advisory, c.pkg); got != c.applies {
			t.Errorf("advisory for %s applies to %s: %v, want %v", c.advisory, c.pkg, got, c.applies)
		}
	}
}

func TestPURL(t *testing.T) {
	for _, c := range []struct {
		pkg  Package
		want string
	}{
		{Package{Type: TypeDebian, Name: "libssl3", Version: "3.0.11-1~deb12u1", Source: "openssl", Distro: "debian-12"}, "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?distro=debian-12&upstream=openssl"},
		{Package{Type: TypeGo, Name: "github.com/gowebpki/jcs", Version: "1.0.1"}, "pkg:golang/github.com/gowebpki/jcs@1.0.1"},
		{Package{Type: TypeNPM, Name: "@babel/core", Version: "7.0.0"}, "pkg:npm/%40babel/core@7.0.0"},
		{Package{Type: TypeMaven, Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1"}, "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"},
	} {
		if got := c.pkg.PURL(); got != c.want {
			t.Errorf("purl of %+v: %s, want %s", c.pkg, got, c.want)
		}
	}
}
