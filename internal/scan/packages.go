// Package scan finds the packages installed in container images and matches
// them against an offline snapshot of OSV advisories, with VEX applied.
//
// Images are read layer by layer. What a layer holds (the packages in each
// package database, manifest or binary it adds, and what it deletes) is kept
// in a cache under the layer's digest, so that a base layer shared by many
// images is read once, and matching a new advisory snapshot needs no image at
// all.
package scan

import (
	"fmt"
	"net/url"
	"strings"
)

// Package types, as in package URLs.
const (
	TypeDebian = "deb"
	TypeAlpine = "apk"
	TypeRPM    = "rpm"
	TypeGo     = "golang"
	TypeNPM    = "npm"
	TypePyPI   = "pypi"
	TypeMaven  = "maven"
)

// Package is one package installed in an image.
type Package struct {
	// Name is the package's name in its ecosystem: a Debian binary package, a
	// Go module path, an npm package, a Maven group:artifact.
	Name string `json:"name"`
	// Version is the installed version, as the package database says it.
	Version string `json:"version"`
	// Type is the package URL type: deb, apk, rpm, golang, npm, pypi or
	// maven.
	Type string `json:"type"`
	// Source is the source package an OS package was built from (Debian's
	// Source, Alpine's origin); OS advisories name source packages.
	Source string `json:"source,omitempty"`
	// SourceVersion is the source package's version when it differs.
	SourceVersion string `json:"sourceVersion,omitempty"`
	// Path is the file the package was found in.
	Path string `json:"path"`
	// Ecosystem is the OSV ecosystem, such as Debian:12, Alpine:v3.20 or Go.
	// OS packages take their release from the image's os-release, so it is
	// set when the layers are put together.
	Ecosystem string `json:"ecosystem,omitempty"`
	// Distro is the os-release ID and VERSION_ID of an OS package's image,
	// for its package URL.
	Distro string `json:"distro,omitempty"`
}

// matchName is the name advisories of the package's ecosystem use.
func (p Package) matchName() string {
	if p.Source != "" {
		return p.Source
	}
	return p.Name
}

// matchVersion is the version advisories of the package's ecosystem compare.
func (p Package) matchVersion() string {
	if p.SourceVersion != "" {
		return p.SourceVersion
	}
	return p.Version
}

// PURL is the package's package URL.
func (p Package) PURL() string {
	var b strings.Builder
	b.WriteString("pkg:" + p.Type + "/")
	switch p.Type {
	case TypeDebian, TypeAlpine, TypeRPM:
		namespace, _, _ := strings.Cut(p.Distro, "-")
		if namespace != "" {
			b.WriteString(purlSegment(namespace) + "/")
		}
		b.WriteString(purlSegment(p.Name))
	case TypeMaven:
		group, artifact, ok := strings.Cut(p.Name, ":")
		if !ok {
			group, artifact = "", p.Name
		}
		b.WriteString(purlPath(group) + "/" + purlSegment(artifact))
	default:
		b.WriteString(purlPath(p.Name))
	}
	if p.Version != "" {
		b.WriteString("@" + purlSegment(p.Version))
	}
	var qualifiers []string
	if p.Distro != "" {
		qualifiers = append(qualifiers, "distro="+url.QueryEscape(p.Distro))
	}
	if p.Source != "" && p.Source != p.Name {
		qualifiers = append(qualifiers, "upstream="+url.QueryEscape(p.Source))
	}
	if len(qualifiers) > 0 {
		b.WriteString("?" + strings.Join(qualifiers, "&"))
	}
	return b.String()
}

// purlPath escapes each segment of a name whose slashes separate a purl
// namespace from its name, such as a Go module path or a scoped npm package.
func purlPath(name string) string {
	segments := strings.Split(name, "/")
	for i, s := range segments {
		segments[i] = purlSegment(s)
	}
	return strings.Join(segments, "/")
}

// purlSegment percent-encodes one segment of a purl; '@' separates the
// version, so it is encoded too.
func purlSegment(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "@", "%40")
}

// OSRelease is what an image's os-release file says about its distribution.
type OSRelease struct {
	ID        string
	VersionID string
}

// parseOSRelease reads the ID and VERSION_ID lines of an os-release file.
func parseOSRelease(content string) OSRelease {
	var r OSRelease
	for line := range strings.Lines(content) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		value = strings.Trim(value, `"'`)
		switch key {
		case "ID":
			r.ID = value
		case "VERSION_ID":
			r.VersionID = value
		}
	}
	return r
}

// ecosystemOf is the OSV ecosystem of a package in an image of the release.
func ecosystemOf(p Package, os OSRelease) (ecosystem, distro string) {
	if os.ID != "" {
		distro = os.ID
		if os.VersionID != "" {
			distro += "-" + os.VersionID
		}
	}
	switch p.Type {
	case TypeGo:
		return "Go", ""
	case TypeNPM:
		return "npm", ""
	case TypePyPI:
		return "PyPI", ""
	case TypeMaven:
		return "Maven", ""
	case TypeAlpine:
		major, rest, _ := strings.Cut(os.VersionID, ".")
		minor, _, _ := strings.Cut(rest, ".")
		if major == "" || minor == "" {
			return "Alpine", distro
		}
		return fmt.Sprintf("Alpine:v%s.%s", major, minor), distro
	case TypeDebian:
		base := "Debian"
		if os.ID == "ubuntu" {
			base = "Ubuntu"
		}
		if os.VersionID == "" {
			return base, distro
		}
		return base + ":" + os.VersionID, distro
	case TypeRPM:
		return rpmEcosystem(os), distro
	}
	return "", distro
}

// rpmEcosystem is the OSV ecosystem of an RPM distribution's packages, or
// empty for one OSV has no advisories for (Fedora, CentOS, Amazon Linux).
// Red Hat's advisories name a product stream after the release
// ("Red Hat:enterprise_linux:9::appstream"); appliesTo matches them by
// prefix.
func rpmEcosystem(os OSRelease) string {
	major, _, _ := strings.Cut(os.VersionID, ".")
	if major == "" {
		return ""
	}
	switch os.ID {
	case "almalinux":
		return "AlmaLinux:" + major
	case "rocky":
		return "Rocky Linux:" + major
	case "rhel":
		return "Red Hat:enterprise_linux:" + major
	case "opensuse-leap":
		return "openSUSE:Leap " + os.VersionID
	case "mageia":
		return "Mageia:" + os.VersionID
	}
	return ""
}
