// Package config carries the manifests that Stella installs into the API
// server it runs against: the generated CRDs, the roles and the admission
// policies.
package config

import "embed"

// Manifests holds the CRDs (crd/bases), the system namespace, the users'
// roles and the controllers' ServiceAccount, roles and bindings (rbac), and
// the admission policies (admission), all in YAML.
//
//go:embed crd/bases/*.yaml rbac/*.yaml admission/*.yaml
var Manifests embed.FS

// Directories of Manifests, applied in this order: the CRDs before the
// policies that match their resources.
const (
	CRDDir       = "crd/bases"
	RBACDir      = "rbac"
	AdmissionDir = "admission"
)
