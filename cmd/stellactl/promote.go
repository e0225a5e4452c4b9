package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/controllers"
)

const promoteExample = `  # Ask for release shop-2.3.1 to enter stage; its gates decide
  stellactl promote shop-2.3.1 --to stage --reason "weekly release"

  # Approve or reject a promotion that waits for approvals
  stellactl approve shop-2.3.1-to-prod-x7k2p --comment "load test passed"
  stellactl reject shop-2.3.1-to-prod-x7k2p --comment "breaks the checkout"`

func promoteCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var env, reason string
	cmd := &cobra.Command{
		Use:     "promote RELEASE --to ENVIRONMENT [--reason TEXT]",
		Short:   "Ask for a release to be promoted into an environment",
		Long:    "Create a Promotion. The server records you as its requester; the environment's gates decide, and on allow the release is deployed to the environment's targets. Follow it with 'stellactl describe promotion NAME'.",
		Example: promoteExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if env == "" {
				return fmt.Errorf("--to is required: name the environment to promote into")
			}
			promo := &v1alpha1.Promotion{
				ObjectMeta: metav1.ObjectMeta{GenerateName: args[0] + "-to-" + env + "-"},
				Spec:       v1alpha1.PromotionSpec{Release: args[0], Environment: env, Reason: reason},
			}
			return create(cmd.Context(), f, streams.Out, promo, "promotion")
		},
	}
	cmd.Flags().StringVar(&env, "to", "", "environment to promote into (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept in the promotion's evidence")
	cmd.AddCommand(promoteCancelCommand(f, streams))
	return cmd
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
			patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+controllers.AnnotationCancel+`":"true"}}}`))
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

// clientFor is a client of the Stella API and the current namespace.
func clientFor(f cmdutil.Factory) (client.Client, string, error) {
	ns, _, err := f.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
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
