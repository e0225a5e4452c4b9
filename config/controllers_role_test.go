package config

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes/scheme"
	rbacvalidation "k8s.io/kubernetes/pkg/registry/rbac/validation"
	rbacauthorizer "k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac"
)

// The controllers' service account, as the API server sees it.
var controllersIdentity = &user.DefaultInfo{
	Name:   serviceaccount.MakeUsername("stella-system", "stella-controllers"),
	Groups: append(serviceaccount.MakeGroupNames("stella-system"), user.AllAuthenticated),
}

// controllersAuthorizer is Kubernetes' own RBAC authorizer over the roles
// and bindings of config/rbac that name stella-controllers, and nothing
// else: what it allows is what `stella controllers` may do on a cluster
// where only install-crds granted it anything.
func controllersAuthorizer(t *testing.T) authorizer.Authorizer {
	t.Helper()
	var (
		roles               []*rbacv1.Role
		roleBindings        []*rbacv1.RoleBinding
		clusterRoles        []*rbacv1.ClusterRole
		clusterRoleBindings []*rbacv1.ClusterRoleBinding
	)
	for _, obj := range decodeAll(t, "controllers_role.yaml", "controllers_binding.yaml") {
		switch o := obj.(type) {
		case *rbacv1.Role:
			roles = append(roles, o)
		case *rbacv1.RoleBinding:
			roleBindings = append(roleBindings, o)
		case *rbacv1.ClusterRole:
			clusterRoles = append(clusterRoles, o)
		case *rbacv1.ClusterRoleBinding:
			clusterRoleBindings = append(clusterRoleBindings, o)
		}
	}
	_, static := rbacvalidation.NewTestRuleResolver(roles, roleBindings, clusterRoles, clusterRoleBindings)
	return rbacauthorizer.New(static, static, static, static)
}

// decodeAll reads every object of the named files of RBACDir.
func decodeAll(t *testing.T, files ...string) []runtime.Object {
	t.Helper()
	var objs []runtime.Object
	for _, f := range files {
		raw, err := fs.ReadFile(Manifests, path.Join(RBACDir, f))
		if err != nil {
			t.Fatal(err)
		}
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 || string(bytes.TrimSpace(doc)) == "---" {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// The generated role grants what the reconcilers need and nothing that
// would make them an admin: a marker lost from controllers/ or
// internal/agentauth, or one widened, fails here.
func TestControllersRoleAllowsWhatTheReconcilersDo(t *testing.T) {
	authz := controllersAuthorizer(t)
	for _, tc := range []struct {
		why                                                 string
		verb, namespace, group, resource, subresource, name string
		allowed                                             bool
	}{
		{why: "leader election", verb: "create", namespace: "stella-system", group: "coordination.k8s.io", resource: "leases", allowed: true},
		{why: "leader election", verb: "update", namespace: "stella-system", group: "coordination.k8s.io", resource: "leases", name: "stella-controllers", allowed: true},
		{why: "only the leader Lease", verb: "update", namespace: "stella-system", group: "coordination.k8s.io", resource: "leases", name: "stella-kube-controllers"},
		{why: "an agent's Lease is the agent's", verb: "update", namespace: "shop", group: "coordination.k8s.io", resource: "leases", name: "agent-host-1"},
		{why: "agents' heartbeats", verb: "watch", group: "coordination.k8s.io", resource: "leases", allowed: true},
		{why: "agent certificates", verb: "watch", group: "certificates.k8s.io", resource: "certificatesigningrequests", allowed: true},
		{why: "agent certificates", verb: "update", group: "certificates.k8s.io", resource: "certificatesigningrequests", subresource: "approval", name: "csr-1", allowed: true},
		{why: "undecided join requests expire", verb: "delete", group: "certificates.k8s.io", resource: "certificatesigningrequests", name: "csr-1", allowed: true},
		{why: "agent certificates", verb: "approve", group: "certificates.k8s.io", resource: "signers", name: "kubernetes.io/kube-apiserver-client", allowed: true},
		{why: "only client certificates", verb: "approve", group: "certificates.k8s.io", resource: "signers", name: "kubernetes.io/kubelet-serving"},
		{why: "nobody's requests but by approval", verb: "create", group: "certificates.k8s.io", resource: "certificatesigningrequests"},
		{why: "deployer credentials, by name", verb: "get", namespace: "shop", resource: "secrets", name: "ssh-key", allowed: true},
		{why: "no listing of other Secrets", verb: "list", namespace: "shop", resource: "secrets"},
		{why: "no listing of other Secrets", verb: "list", resource: "secrets"},
		{why: "no writing of other Secrets", verb: "delete", namespace: "shop", resource: "secrets", name: "ssh-key"},
		{why: "join tokens", verb: "watch", namespace: "kube-system", resource: "secrets", allowed: true},
		{why: "join tokens are used up", verb: "delete", namespace: "kube-system", resource: "secrets", name: "bootstrap-token-abcdef", allowed: true},
		{why: "no new tokens", verb: "create", namespace: "kube-system", resource: "secrets"},
		{why: "events", verb: "create", namespace: "shop", resource: "events", allowed: true},
		{why: "rollouts", verb: "create", namespace: "shop", group: "stella-ops.org", resource: "deploytasks", allowed: true},
		{why: "rollouts", verb: "patch", namespace: "shop", group: "stella-ops.org", resource: "deploytasks", subresource: "status", name: "t", allowed: true},
		{why: "decisions", verb: "patch", namespace: "shop", group: "stella-ops.org", resource: "promotions", subresource: "status", name: "p", allowed: true},
		{why: "DeployTasks block their promotion's deletion", verb: "update", namespace: "shop", group: "stella-ops.org", resource: "promotions", subresource: "finalizers", name: "p", allowed: true},
		{why: "auto-promotions", verb: "create", namespace: "shop", group: "stella-ops.org", resource: "promotions", allowed: true},
		{why: "sealing", verb: "create", namespace: "shop", group: "stella-ops.org", resource: "evidencepackets", allowed: true},
		{why: "approvals are people's", verb: "create", namespace: "shop", group: "stella-ops.org", resource: "approvals"},
		{why: "releases are people's", verb: "update", namespace: "shop", group: "stella-ops.org", resource: "releases", name: "r"},
		{why: "archived promotions leave the API", verb: "delete", namespace: "shop", group: "stella-ops.org", resource: "promotions", name: "p", allowed: true},
		{why: "archived promotions leave the API", verb: "delete", namespace: "shop", group: "stella-ops.org", resource: "evidencepackets", name: "p-decision-1", allowed: true},
		{why: "archived promotions leave the API", verb: "delete", namespace: "shop", group: "stella-ops.org", resource: "approvals", name: "a", allowed: true},
		{why: "releases are people's", verb: "delete", namespace: "shop", group: "stella-ops.org", resource: "releases", name: "r"},
		{why: "environments are people's", verb: "delete", namespace: "shop", group: "stella-ops.org", resource: "environments", name: "prod"},
		{why: "not an admin", verb: "delete", resource: "namespaces", name: "shop"},
		{why: "not an admin", verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"},
		{why: "not an admin", verb: "create", namespace: "shop", resource: "serviceaccounts", subresource: "token", name: "default"},
		{why: "not an admin", verb: "impersonate", resource: "users", name: "admin"},
	} {
		attrs := authorizer.AttributesRecord{User: controllersIdentity, Verb: tc.verb, Namespace: tc.namespace, APIGroup: tc.group, APIVersion: "v1",
			Resource: tc.resource, Subresource: tc.subresource, Name: tc.name, ResourceRequest: true}
		decision, reason, err := authz.Authorize(t.Context(), attrs)
		if err != nil {
			t.Fatal(err)
		}
		if got := decision == authorizer.DecisionAllow; got != tc.allowed {
			t.Errorf("%s %s/%s %s in %q (%s): allowed %v, want %v (%s)", tc.verb, tc.resource, tc.subresource, tc.name, tc.namespace, tc.why, got, tc.allowed, reason)
		}
	}
}

// No rule of the controllers' roles grants every verb, resource, group or
// name: each permission is one the code uses.
func TestControllersRoleHasNoWildcards(t *testing.T) {
	var rules []rbacv1.PolicyRule
	for _, obj := range decodeAll(t, "controllers_role.yaml") {
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			rules = append(rules, o.Rules...)
		case *rbacv1.Role:
			rules = append(rules, o.Rules...)
		}
	}
	if len(rules) == 0 {
		t.Fatal("controllers_role.yaml has no rules")
	}
	for _, r := range rules {
		for _, list := range [][]string{r.Verbs, r.Resources, r.APIGroups, r.ResourceNames, r.NonResourceURLs} {
			if slices.Contains(list, rbacv1.VerbAll) || slices.ContainsFunc(list, func(s string) bool { return path.Base(s) == "*" }) {
				t.Errorf("rule %v grants everything of %v", r, list)
			}
		}
	}
}
