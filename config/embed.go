// Package config carries the manifests that Stella installs into the API
// server it runs against: the generated CRDs, the roles and the admission
// policies.
package config

import "embed"

// Manifests holds the CRDs (crd/bases), the system namespace and roles
// (rbac) and the admission policies (admission), all in YAML.
//
//go:embed crd/bases/*.yaml rbac/*.yaml admission/*.yaml
var Manifests embed.FS

// ManifestDirs are the directories of Manifests in the order they must be
// applied: the CRDs before the policies that match their resources.
var ManifestDirs = []string{"crd/bases", "rbac", "admission"}
