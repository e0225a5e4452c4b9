package main

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	rbacclient "k8s.io/client-go/kubernetes/typed/rbac/v1"
)

// binding is what create-user grants: one user, one Stella ClusterRole,
// either in one namespace (Namespace set) or cluster-wide.
type binding struct {
	User        string
	Role        string
	ClusterRole string
	Namespace   string
}

func (b binding) name() string { return bindingName(b.Role, b.User) }

// describe names the binding as a user would look it up.
func (b binding) describe() string {
	if b.Namespace == "" {
		return "ClusterRoleBinding " + b.name()
	}
	return fmt.Sprintf("RoleBinding %s in namespace %s", b.name(), b.Namespace)
}

func (b binding) labels() map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": name, "app.kubernetes.io/part-of": "stella"}
}

func (b binding) subject() *rbacac.SubjectApplyConfiguration {
	return rbacac.Subject().WithKind(rbacv1.UserKind).WithAPIGroup(rbacv1.GroupName).WithName(b.User)
}

func (b binding) roleRef() *rbacac.RoleRefApplyConfiguration {
	return rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(b.ClusterRole)
}

// apply creates the binding or brings it back to exactly this user and role.
// Server-side apply with force makes a repeated create-user converge in one
// request; subjects is an atomic list, so stray subjects are dropped too.
func (b binding) apply(ctx context.Context, rbac rbacclient.RbacV1Interface) error {
	opts := metav1.ApplyOptions{FieldManager: name, Force: true}
	var err error
	if b.Namespace == "" {
		_, err = rbac.ClusterRoleBindings().Apply(ctx, rbacac.ClusterRoleBinding(b.name()).
			WithLabels(b.labels()).WithSubjects(b.subject()).WithRoleRef(b.roleRef()), opts)
	} else {
		_, err = rbac.RoleBindings(b.Namespace).Apply(ctx, rbacac.RoleBinding(b.name(), b.Namespace).
			WithLabels(b.labels()).WithSubjects(b.subject()).WithRoleRef(b.roleRef()), opts)
	}
	if err == nil {
		return nil
	}
	hint := permissionHint(err)
	if apierrors.IsInvalid(err) {
		// The only field we set that can be invalid on an existing object
		// is the immutable roleRef of a binding someone else made.
		kind, ns := "clusterrolebinding", ""
		if b.Namespace != "" {
			kind, ns = "rolebinding", " -n "+b.Namespace
		}
		hint = fmt.Sprintf("\nhint: a binding of that name exists for another role; remove it with: %s delete %s %s%s", name, kind, b.name(), ns)
	}
	return fmt.Errorf("bind ClusterRole %s to %s with %s: %w%s", b.ClusterRole, b.User, b.describe(), err, hint)
}
