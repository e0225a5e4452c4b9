package main

import (
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func rollbackCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var to, reason string
	cmd := &cobra.Command{
		Use:   "rollback ENVIRONMENT [--to RELEASE]",
		Short: "Return an environment to an earlier release",
		Long: `Promote the release that succeeded in the environment before the current
one (or the release named with --to, which must have succeeded there) as a
rollback: the environment's promotesFrom does not apply, and the gate types in
its spec.rollbackSkipGateTypes (soak by default) are skipped; every other gate
decides as usual.`,
		Example: "  stellactl rollback prod\n  stellactl rollback prod --to shop-2.3.0",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := clientFor(f)
			if err != nil {
				return err
			}
			env := &v1alpha1.Environment{}
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: args[0]}, env); err != nil {
				return err
			}
			target, err := rollbackTarget(env, to)
			if err != nil {
				return err
			}
			if reason == "" {
				reason = fmt.Sprintf("rollback of %s from %s", env.Name, env.Status.CurrentRelease)
			}
			promo := &v1alpha1.Promotion{
				ObjectMeta: metav1.ObjectMeta{GenerateName: env.Name + "-rollback-to-" + target + "-"},
				Spec:       v1alpha1.PromotionSpec{Release: target, Environment: env.Name, Rollback: true, Reason: reason},
			}
			return create(cmd.Context(), f, streams.Out, promo, "promotion")
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "release to return to (default: the one that succeeded before the current one)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept in the promotion's evidence")
	return cmd
}

// rollbackTarget is the release to go back to: to, when it succeeded in env
// before, or else the newest release other than the current one that did.
func rollbackTarget(env *v1alpha1.Environment, to string) (string, error) {
	for _, h := range env.Status.History { // newest first
		if h.Phase != v1alpha1.PromotionSucceeded {
			continue
		}
		if to == h.Release || (to == "" && h.Release != env.Status.CurrentRelease) {
			return h.Release, nil
		}
	}
	if to != "" {
		return "", fmt.Errorf("release %s never succeeded in environment %s (see its status.history): a rollback returns to a release that ran there", to, env.Name)
	}
	return "", fmt.Errorf("environment %s has no earlier successful release to roll back to (see its status.history)", env.Name)
}
