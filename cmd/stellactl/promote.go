package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

const promoteExample = `  # Ask for release shop-2.3.1 to enter stage; its gates decide
  stellactl promote shop-2.3.1 --to stage --reason "weekly release"

  # Promote and follow the promotion to its end; the exit code says how it ended
  stellactl promote shop-2.3.1 --to stage --wait --timeout 15m

  # Approve or reject a promotion that waits for approvals
  stellactl approve shop-2.3.1-to-prod-x7k2p --comment "load test passed"
  stellactl reject shop-2.3.1-to-prod-x7k2p --comment "breaks the checkout"`

const promoteLong = `Create a Promotion. The server records you as its requester; the
environment's gates decide, and on allow the release is deployed to the
environment's targets. Follow it with 'stellactl describe promotion NAME', or
with --wait.

Before creating anything, promote checks that you may create promotions in the
namespace and that the release and the environment exist there, and names the
closest existing ones when they do not. The embedded Stella server refuses such
a promotion itself, whoever creates it; on a Kubernetes cluster, where the
admission policies cannot read other objects, this check is what catches it.

With --wait, promote prints each phase the promotion enters and ends when it
is finished or --timeout passes; the promotion goes on after a timeout.
`

func promoteCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var env, reason string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "promote RELEASE --to ENVIRONMENT [--reason TEXT] [--wait [--timeout DURATION]]",
		Short:   "Ask for a release to be promoted into an environment",
		Long:    promoteLong + promoteExitCodesHelp(),
		Example: promoteExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if env == "" {
				return fmt.Errorf("--to is required: name the environment to promote into")
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: must be more than zero", timeout)
			}
			c, ns, err := clientFor(f)
			if err != nil {
				return err
			}
			cs, err := clientset(f)
			if err != nil {
				return err
			}
			if err := checkPromotable(cmd.Context(), c, cs, ns, args[0], env); err != nil {
				return err
			}
			promo := &v1alpha1.Promotion{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: args[0] + "-to-" + env + "-"},
				Spec:       v1alpha1.PromotionSpec{Release: args[0], Environment: env, Reason: reason},
			}
			if err := c.Create(cmd.Context(), promo); err != nil {
				return err
			}
			if _, err := fmt.Fprintf(streams.Out, "promotion.stella-ops.org/%s created\n", promo.Name); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			return waitForPromotion(cmd.Context(), c, promo, timeout, streams.Out)
		},
	}
	cmd.Flags().StringVar(&env, "to", "", "environment to promote into (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept in the promotion's evidence")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the promotion until it is finished, printing each phase; the exit code says how it ended")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "with --wait, how long to follow the promotion before giving up (it goes on)")
	cmd.AddCommand(promoteCancelCommand(f, streams))
	return cmd
}

// checkPromotable refuses, before anything is created, a promotion that the
// server would refuse or that could never start: the caller may not create
// promotions in ns, or the release or the environment does not exist there.
func checkPromotable(ctx context.Context, c client.Client, cs kubernetes.Interface, ns, release, env string) error {
	review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: "create", Group: v1alpha1.GroupVersion.Group, Resource: "promotions",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("ask the server whether you may create promotions in namespace %s: %w", ns, err)
	}
	if !review.Status.Allowed {
		return fmt.Errorf("you may not create promotions in namespace %s: promoting needs the releaser role there "+
			"(an admin grants it with: stellactl auth create-user NAME --role releaser -n %s), or pass -n with a namespace where you have it", ns, ns)
	}
	var problems []string
	for _, ref := range []struct{ field, kind, name string }{
		{"spec.release", "Release", release},
		{"spec.environment", "Environment", env},
	} {
		problem, err := missingReference(ctx, c, ns, ref.field, ref.kind, ref.name)
		if err != nil {
			return err
		}
		if problem != "" {
			problems = append(problems, problem)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cannot promote %s to %s, nothing was created:\n  %s", release, env, strings.Join(problems, "\n  "))
	}
	return nil
}

// maxListedNames bounds the names listed when none is close to the one
// asked for.
const maxListedNames = 5

// missingReference says what is wrong when no object of kind is named name
// in ns, with the names that were likely meant; it is empty when the
// object exists.
func missingReference(ctx context.Context, c client.Client, ns, field, kind, name string) (string, error) {
	gvk := v1alpha1.GroupVersion.WithKind(kind)
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(gvk)
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case err == nil:
		return "", nil
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("read %s %s in namespace %s: %w", kind, name, ns, err)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind + "List"))
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return "", fmt.Errorf("list %ss in namespace %s: %w", kind, ns, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, item := range list.Items {
		names = append(names, item.Name)
	}
	msg := fmt.Sprintf("%s: %s %q does not exist in namespace %s", field, kind, name, ns)
	switch near := nearNames(name, names); {
	case len(near) > 0:
		msg += fmt.Sprintf("; did you mean %s?", quotedList(near, "or"))
	case len(names) == 0:
		msg += fmt.Sprintf("; namespace %s has no %ss: is -n/--namespace right?", ns, strings.ToLower(kind))
	default:
		msg += "; it has " + someNames(names)
	}
	elsewhere, err := namespacesHolding(ctx, c, gvk, name)
	if err != nil {
		return "", err
	}
	switch len(elsewhere) {
	case 0:
	case 1:
		msg += fmt.Sprintf(" (%s %s exists in namespace %q: pass -n %s)", kind, name, elsewhere[0], elsewhere[0])
	default:
		msg += fmt.Sprintf(" (%s %s exists in namespaces %s: pass -n with one of them)", kind, name, someNames(elsewhere))
	}
	return msg, nil
}

// namespacesHolding lists the namespaces that have an object of kind gvk
// named name, as far as the caller may see: a user bound in one namespace
// only cannot list across namespaces, and then learns nothing here.
func namespacesHolding(ctx context.Context, c client.Client, gvk schema.GroupVersionKind, name string) ([]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	err := c.List(ctx, list, client.MatchingFields{"metadata.name": name})
	if apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for %s %s in other namespaces: %w", gvk.Kind, name, err)
	}
	var namespaces []string
	for _, item := range list.Items {
		namespaces = append(namespaces, item.Namespace)
	}
	return namespaces, nil
}

// someNames lists the first maxListedNames of names in order, and counts
// the rest.
func someNames(names []string) string {
	names = slices.Sorted(slices.Values(names))
	if len(names) <= maxListedNames {
		return quotedList(names, "and")
	}
	quoted := make([]string, maxListedNames)
	for i, n := range names[:maxListedNames] {
		quoted[i] = strconv.Quote(n)
	}
	return strings.Join(quoted, ", ") + fmt.Sprintf(" and %d more", len(names)-maxListedNames)
}

// quotedList is "a", "a" or "b", "a", "b" or "c".
func quotedList(names []string, conjunction string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	if len(quoted) == 1 {
		return quoted[0]
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + " " + conjunction + " " + quoted[len(quoted)-1]
}

func promoteCancelCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel PROMOTION",
		Short: "Cancel a promotion that has not finished",
		Long: "Cancel a promotion: it ends Cancelled and starts no more DeployTasks; tasks already started run to their end. " +
			"A finished promotion is left as it is.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := clientFor(f)
			if err != nil {
				return err
			}
			promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: args[0]}}
			patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+v1alpha1.AnnotationCancel+`":"true"}}}`))
			if err := c.Patch(cmd.Context(), promo, patch); err != nil {
				return err
			}
			_, err = fmt.Fprintf(streams.Out, "promotion.stella-ops.org/%s cancel requested\n", promo.Name)
			return err
		},
	}
}

func approvalCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, decision v1alpha1.ApprovalDecision) *cobra.Command {
	var comment string
	verb := string(decision)
	cmd := &cobra.Command{
		Use:   verb + " PROMOTION [--comment TEXT]",
		Short: map[v1alpha1.ApprovalDecision]string{v1alpha1.ApprovalApprove: "Approve a promotion", v1alpha1.ApprovalReject: "Reject a promotion"}[decision],
		Long: "Create an Approval of the promotion. The server records you as the approver; an approval gate counts it when you are " +
			"allowed to approve and did not request the promotion yourself. A rejection by an allowed approver rejects the promotion. " +
			"The approval is bound to the promotion as it is now (its UID, its release and that release's image digests): it never " +
			"counts for a promotion created later under the same name, nor for other images.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if decision == v1alpha1.ApprovalReject && comment == "" {
				return fmt.Errorf("--comment is required to reject: say why, it is kept in the promotion's evidence")
			}
			c, ns, err := clientFor(f)
			if err != nil {
				return err
			}
			spec, err := boundApproval(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			spec.Decision, spec.Comment = decision, comment
			appr := &v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{GenerateName: args[0] + "-"}, Spec: spec}
			return create(cmd.Context(), f, streams.Out, appr, "approval")
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why, kept in the promotion's evidence")
	return cmd
}

// boundApproval is the spec of an approval of promotion name in ns, bound to
// the promotion and its release as the server holds them now. The Stella
// server binds approvals itself; another Kubernetes cluster's admission
// policies require the client to.
func boundApproval(ctx context.Context, c client.Reader, ns, name string) (v1alpha1.ApprovalSpec, error) {
	promo := &v1alpha1.Promotion{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, promo); err != nil {
		if apierrors.IsNotFound(err) {
			return v1alpha1.ApprovalSpec{}, fmt.Errorf("there is no promotion %s in namespace %s to approve (stellactl get promotions)", name, ns)
		}
		return v1alpha1.ApprovalSpec{}, fmt.Errorf("read promotion %s: %w", name, err)
	}
	rel := &v1alpha1.Release{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: promo.Spec.Release}, rel); err != nil {
		return v1alpha1.ApprovalSpec{}, fmt.Errorf("read release %s of promotion %s: %w", promo.Spec.Release, name, err)
	}
	spec := v1alpha1.ApprovalSpec{Promotion: name, PromotionUID: promo.UID, Release: rel.Name}
	for _, comp := range rel.Spec.Components {
		spec.Components = append(spec.Components, v1alpha1.ComponentDigest{Name: comp.Name, Image: comp.Image})
	}
	return spec, nil
}

// clientFor is a client of the Stella API, which can also watch, and the
// current namespace.
func clientFor(f cmdutil.Factory) (client.WithWatch, string, error) {
	ns, _, err := f.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	return c, ns, err
}

// create creates obj in the current namespace and prints its name the way
// kubectl does.
func create(ctx context.Context, f cmdutil.Factory, out io.Writer, obj client.Object, kind string) error {
	c, ns, err := clientFor(f)
	if err != nil {
		return err
	}
	obj.SetNamespace(ns)
	if err := c.Create(ctx, obj); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s.stella-ops.org/%s created\n", kind, obj.GetName())
	return err
}
