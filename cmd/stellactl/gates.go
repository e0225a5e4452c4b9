package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/inputs"
)

// Exit codes of gates check, so that a CI step can gate on the verdict:
// 0 is allow.
const (
	exitGatesDeny    = 8
	exitGatesPending = 9
)

func gatesCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "gates", Short: "Explain what the gates of an environment would decide"}
	var env string
	check := &cobra.Command{
		Use:   "check RELEASE --env ENVIRONMENT",
		Short: "Dry-run every gate of an environment for a release, with the current inputs",
		Long: `Evaluate every gate of the environment as a promotion of the release by
you, now, would face it, and print each verdict with its reasons. Nothing is
created or changed.

Exit status: 0 when the decision is allow, 8 when it is deny, 9 when it is
pending (for example waiting for approvals), 1 for any other error.`,
		Example: "  stellactl gates check shop-2.3.1 --env prod",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGatesCheck(cmd.Context(), f, streams.Out, args[0], env)
		},
	}
	check.Flags().StringVar(&env, "env", "", "environment whose gates to check (required)")
	cmdutil.CheckErr(check.MarkFlagRequired("env"))
	cmd.AddCommand(check)
	return cmd
}

func runGatesCheck(ctx context.Context, f cmdutil.Factory, out io.Writer, release, env string) error {
	c, ns, err := clientFor(f)
	if err != nil {
		return err
	}
	// The gates judge the requester too (separation of duties): that is you.
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return fmt.Errorf("find out who you are: %w", err)
	}
	promo := &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: release + "-to-" + env + "-check", CreationTimestamp: metav1.Now()},
		Spec:       v1alpha1.PromotionSpec{Release: release, Environment: env, RequestedBy: review.Status.UserInfo.Username},
	}
	ex, err := inputs.Explain(ctx, inputs.ListReader{Reader: c}, promo, time.Now())
	if err != nil {
		return err
	}
	var rows [][]any
	for _, g := range ex.Gates {
		rows = append(rows, []any{g.Name, string(g.Type), string(g.Result), strings.Join(g.ReasonCodes, ","), g.Message})
	}
	if err := printTable(out, []string{"Gate", "Type", "Result", "Reasons", "Message"}, rows); err != nil {
		return err
	}
	if !ex.UpstreamOK {
		fmt.Fprintf(out, "\nDecision: deny (promotion.upstream-not-succeeded): %s has not succeeded in an environment %s promotes from\n", release, env)
		return &exitError{code: exitGatesDeny, err: fmt.Errorf("the gates of %s deny %s", env, release)}
	}
	reasons := ""
	if len(ex.Decision.ReasonCodes) > 0 {
		reasons = " (" + strings.Join(ex.Decision.ReasonCodes, ", ") + ")"
	}
	if _, err := fmt.Fprintf(out, "\nDecision: %s%s\n", ex.Decision.Result, reasons); err != nil {
		return err
	}
	return gatesVerdictExit(ex.Decision.Result, release, env)
}

// gatesVerdictExit turns a decision other than allow into its exit code.
func gatesVerdictExit(result v1alpha1.DecisionResult, release, env string) error {
	switch result {
	case v1alpha1.DecisionAllow:
		return nil
	case v1alpha1.DecisionPending:
		return &exitError{code: exitGatesPending, err: fmt.Errorf("the gates of %s are pending for %s", env, release)}
	default:
		return &exitError{code: exitGatesDeny, err: fmt.Errorf("the gates of %s deny %s", env, release)}
	}
}
