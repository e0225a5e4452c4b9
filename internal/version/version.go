// Package version holds the build's version, set by the linker.
package version

import "runtime/debug"

// Version and Commit are set with -ldflags -X at build time.
var (
	Version = "v0.0.0-dev"
	Commit  = ""
)

// String is "Version (Commit)", with the commit from the build info when the
// linker did not set it.
func String() string {
	commit := Commit
	if commit == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					commit = s.Value
				}
			}
		}
	}
	if commit == "" {
		return Version
	}
	return Version + " (" + commit + ")"
}
