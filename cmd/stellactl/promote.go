package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
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
			"allowed to approve and did not request the promotion yourself. A rejection by an allowed approver rejects the promotion.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if decision == v1alpha1.ApprovalReject && comment == "" {
				return fmt.Errorf("--comment is required to reject: say why, it is kept in the promotion's evidence")
			}
			appr := &v1alpha1.Approval{
				ObjectMeta: metav1.ObjectMeta{GenerateName: args[0] + "-"},
				Spec:       v1alpha1.ApprovalSpec{Promotion: args[0], Decision: decision, Comment: comment},
			}
			return create(cmd.Context(), f, streams.Out, appr, "approval")
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why, kept in the promotion's evidence")
	return cmd
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
