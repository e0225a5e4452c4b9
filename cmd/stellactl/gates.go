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
	"k8s.io/cli-runtime/pkg/printers"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evaluation"
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
	output := newOutputFlags()
	check := &cobra.Command{
		Use:   "check RELEASE --env ENVIRONMENT",
		Short: "Dry-run every gate of an environment for a release, with the current inputs",
		Long: `Evaluate every gate of the environment as a promotion of the release by
you, now, would face it, and print each verdict with its reasons. Nothing is
created or changed. With -o json or yaml the check is printed as a GateCheck
(stellactl.stella-ops.org/v1): the release, environment and requester in its
spec, each gate's verdict and the decision in its status.

Exit status: 0 when the decision is allow, 8 when it is deny, 9 when it is
pending (for example waiting for approvals), 1 for any other error.`,
		Example: "  stellactl gates check shop-2.3.1 --env prod\n  stellactl gates check shop-2.3.1 --env prod -o jsonpath='{.status.decision}'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			printer, err := output.objectPrinter()
			if err != nil {
				return err
			}
			result, err := runGatesCheck(cmd.Context(), f, args[0], env)
			if err != nil {
				return err
			}
			if err := printGateCheck(streams.Out, printer, result); err != nil {
				return err
			}
			return gatesVerdictExit(result.Status.Decision, args[0], env)
		},
	}
	check.Flags().StringVar(&env, "env", "", "environment whose gates to check (required)")
	output.addFlags(check)
	cmdutil.CheckErr(check.MarkFlagRequired("env"))
	cmd.AddCommand(check)
	return cmd
}

// GateCheck is what `gates check` prints with -o json or yaml: like an
// access review, the question in spec and the answer in status.
type GateCheck struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              GateCheckSpec   `json:"spec"`
	Status            GateCheckStatus `json:"status"`
}

// GateCheckSpec is the promotion the gates were asked about.
type GateCheckSpec struct {
	Release     string `json:"release"`
	Environment string `json:"environment"`
	// RequestedBy is you, as the server authenticates you: the gates judge
	// the requester too (separation of duties).
	RequestedBy string `json:"requestedBy"`
}

// GateCheckStatus is the gates' answer.
type GateCheckStatus struct {
	// Gates are the verdicts, in the environment's order.
	Gates []v1alpha1.GateEvaluation `json:"gates"`
	// Decision is allow, deny or pending: the exit status tells it too.
	Decision    v1alpha1.DecisionResult `json:"decision"`
	ReasonCodes []string                `json:"reasonCodes,omitempty"`
	// Message is set when the decision was made before any gate: a release
	// that has not succeeded upstream is denied whatever the gates say.
	Message string `json:"message,omitempty"`
}

func runGatesCheck(ctx context.Context, f cmdutil.Factory, release, env string) (*GateCheck, error) {
	c, ns, err := clientFor(f)
	if err != nil {
		return nil, err
	}
	// The gates judge the requester too (separation of duties): that is you.
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return nil, fmt.Errorf("find out who you are: %w", err)
	}
	promo := &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: release + "-to-" + env + "-check", CreationTimestamp: metav1.Now()},
		Spec:       v1alpha1.PromotionSpec{Release: release, Environment: env, RequestedBy: review.Status.UserInfo.Username},
	}
	ex, err := inputs.Explain(ctx, inputs.ListReader{Reader: c}, promo, time.Now())
	if err != nil {
		return nil, err
	}
	check := &GateCheck{
		TypeMeta:   metav1.TypeMeta{APIVersion: stellactlGroupVersion.String(), Kind: "GateCheck"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: promo.Name},
		Spec:       GateCheckSpec{Release: release, Environment: env, RequestedBy: promo.Spec.RequestedBy},
		Status:     GateCheckStatus{Gates: ex.Gates, Decision: ex.Decision.Result, ReasonCodes: ex.Decision.ReasonCodes},
	}
	if check.Status.Gates == nil {
		check.Status.Gates = []v1alpha1.GateEvaluation{}
	}
	if !ex.UpstreamOK {
		check.Status.Decision = v1alpha1.DecisionDeny
		check.Status.ReasonCodes = []string{evaluation.ReasonUpstreamNotSucceeded}
		check.Status.Message = fmt.Sprintf("%s has not succeeded in an environment %s promotes from", release, env)
	}
	return check, nil
}

// printGateCheck prints the verdicts as a table followed by the decision,
// or the whole check with printer when -o asked for one.
func printGateCheck(out io.Writer, printer printers.ResourcePrinter, check *GateCheck) error {
	if printer != nil {
		obj, err := printable(check)
		if err != nil {
			return err
		}
		return printer.PrintObj(obj, out)
	}
	var rows [][]any
	for _, g := range check.Status.Gates {
		rows = append(rows, []any{g.Name, g.Type, string(g.Result), strings.Join(g.ReasonCodes, ","), g.Message})
	}
	if err := printTable(out, []string{"Gate", "Type", "Result", "Reasons", "Message"}, rows); err != nil {
		return err
	}
	reasons := ""
	if len(check.Status.ReasonCodes) > 0 {
		reasons = " (" + strings.Join(check.Status.ReasonCodes, ", ") + ")"
	}
	message := ""
	if check.Status.Message != "" {
		message = ": " + check.Status.Message
	}
	_, err := fmt.Fprintf(out, "\nDecision: %s%s%s\n", check.Status.Decision, reasons, message)
	return err
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
