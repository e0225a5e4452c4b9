package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes/scheme"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

func authCommand(f cmdutil.Factory, configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Inspect your identity and create users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(whoamiCommand(f, streams), createUserCommand(f, configFlags, streams))
	return cmd
}

// whoamiCommand asks the server, not the kubeconfig, who the caller is: the
// server's answer includes the groups that authorization will use, which a
// client certificate alone does not show (system:authenticated, for one).
func whoamiCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	printFlags := genericclioptions.NewPrintFlags("").WithTypeSetter(scheme.Scheme)
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Print the user name and groups the server authenticates you as",
		Example: `  # Print your user name and groups
  stellactl auth whoami

  # Print the whole SelfSubjectReview
  stellactl auth whoami -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := f.KubernetesClientSet()
			if err != nil {
				return err
			}
			review, err := client.AuthenticationV1().SelfSubjectReviews().Create(cmd.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("the server does not serve SelfSubjectReview (authentication.k8s.io/v1), so it cannot say who you are: %w", err)
			}
			if err != nil {
				return err
			}
			if !printFlags.OutputFlagSpecified() {
				return printUserInfo(streams.Out, review.Status.UserInfo)
			}
			printer, err := printFlags.ToPrinter()
			if err != nil {
				return err
			}
			return printer.PrintObj(review, streams.Out)
		},
	}
	printFlags.AddFlags(cmd)
	return cmd
}

func printUserInfo(out io.Writer, u authenticationv1.UserInfo) error {
	rows := [][2]string{{"Username", u.Username}}
	if u.UID != "" {
		rows = append(rows, [2]string{"UID", u.UID})
	}
	rows = append(rows, [2]string{"Groups", strings.Join(u.Groups, ", ")})
	keys := make([]string, 0, len(u.Extra))
	for k := range u.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rows = append(rows, [2]string{"Extra", k + "=" + strings.Join(u.Extra[k], ",")})
	}
	w := printers.GetNewTabWriter(out)
	for _, r := range rows {
		if _, err := fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1]); err != nil {
			return err
		}
	}
	return w.Flush()
}
