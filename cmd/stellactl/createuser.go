package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/internal/pki"
)

const createUserLong = `Create a user with a client certificate and grant a Stella role.

stellactl generates an ECDSA P-256 key locally (it never leaves this machine),
asks the server's CA to sign it through a CertificateSigningRequest (signer
kubernetes.io/kube-apiserver-client), approves that request, binds the
ClusterRole stella-ROLE to the user, and prints a kubeconfig with the
certificate and key embedded. The server URL and CA come from your current
kubeconfig.

With -n/--namespace the role is granted in that namespace only (RoleBinding);
without it, in every namespace (ClusterRoleBinding). Running the command again
issues a new certificate and leaves one binding.

A certificate cannot be revoked before it expires; keep --ttl short for people
and remove access by deleting the binding.

Roles: ` + "viewer, auditor, releaser, approver, security, admin, agent."

const createUserExample = `  # alice may create releases and request promotions in namespace shop
  stellactl auth create-user alice --role releaser -n shop > alice.kubeconfig
  KUBECONFIG=alice.kubeconfig stellactl auth whoami

  # bob approves promotions everywhere, for one day, as member of group qa
  stellactl auth create-user bob --role approver --groups qa --ttl 24h > bob.kubeconfig`

type createUserOptions struct {
	User   string
	Role   string
	TTL    time.Duration
	Groups []string
}

func createUserCommand(f cmdutil.Factory, configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := createUserOptions{TTL: 365 * 24 * time.Hour}
	cmd := &cobra.Command{
		Use:     "create-user NAME --role ROLE [-n NAMESPACE] [--ttl DURATION] [--groups G1,G2]",
		Short:   "Create a certificate user with a Stella role and print their kubeconfig",
		Long:    createUserLong,
		Example: createUserExample,
		Args:    cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.User = args[0]
			return runCreateUser(cmd.Context(), f, configFlags, o, streams)
		},
	}
	cmd.Flags().StringVar(&o.Role, "role", "", "Stella role to grant: "+strings.Join(roles, ", "))
	cmd.Flags().DurationVar(&o.TTL, "ttl", o.TTL, "Lifetime of the certificate; the server may cap it (stella serve: 1 year)")
	cmd.Flags().StringSliceVar(&o.Groups, "groups", nil, "Groups of the user, comma-separated (the certificate's O)")
	cmdutil.CheckErr(cmd.MarkFlagRequired("role"))
	cmdutil.CheckErr(cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions(roles, cobra.ShellCompDirectiveNoFileComp)))
	return cmd
}

// validate checks everything that can be checked without the server, so a
// typo never leaves a half-created user behind.
func (o *createUserOptions) validate() (clusterRole string, err error) {
	if err := validateUserName(o.User); err != nil {
		return "", err
	}
	if clusterRole, err = clusterRoleFor(o.Role); err != nil {
		return "", err
	}
	if err := validateTTL(o.TTL); err != nil {
		return "", err
	}
	if o.Groups, err = normalizeGroups(o.Groups); err != nil {
		return "", err
	}
	return clusterRole, nil
}

func runCreateUser(ctx context.Context, f cmdutil.Factory, configFlags *genericclioptions.ConfigFlags, o createUserOptions, streams genericiooptions.IOStreams) error {
	clusterRole, err := o.validate()
	if err != nil {
		return err
	}
	// Only an explicit -n scopes the grant to a namespace. The current
	// context's namespace is a default for listing things; letting it decide
	// the scope of a grant would be a surprise either way.
	namespace, explicit, err := f.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	if !explicit {
		namespace = ""
	}
	if namespace != "" && o.Role == "auditor" {
		return fmt.Errorf("--role auditor reads evidence, which belongs to no namespace: leave out -n/--namespace")
	}
	restConfig, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	raw, err := f.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return err
	}
	cluster := clusterName(raw, *configFlags.Context, *configFlags.ClusterName)
	client, err := f.KubernetesClientSet()
	if err != nil {
		return err
	}
	if err := checkClusterRole(ctx, client, clusterRole); err != nil {
		return err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	request, err := certificateRequest(o.User, o.Groups, key)
	if err != nil {
		return err
	}
	certPEM, err := issueCertificate(ctx, client, o.User, request, o.TTL,
		fmt.Sprintf("%s auth create-user %s --role %s", name, o.User, o.Role))
	if err != nil {
		return err
	}
	cert, err := checkCertificate(certPEM, o.User, key)
	if err != nil {
		return err
	}

	b := binding{User: o.User, Role: o.Role, ClusterRole: clusterRole, Namespace: namespace}
	if err := b.apply(ctx, client.RbacV1()); err != nil {
		return err
	}

	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	kc, err := userKubeconfigFor(restConfig, cluster, o.User, certPEM, keyPEM, namespace)
	if err != nil {
		return err
	}
	out, err := kc.render()
	if err != nil {
		return err
	}
	if _, err := streams.Out.Write(out); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	// The summary goes to stderr so that stdout stays a clean kubeconfig.
	summary := fmt.Sprintf("User %s (groups: %s) has ClusterRole %s through %s; certificate valid until %s.\n",
		o.User, groupList(o.Groups), clusterRole, b.describe(), cert.NotAfter.UTC().Format(time.RFC3339))
	if got := cert.NotAfter.Sub(cert.NotBefore); got < o.TTL-5*time.Minute {
		summary += fmt.Sprintf("Warning: the server shortened the certificate's lifetime to %s (asked for %s).\n", got.Round(time.Hour), o.TTL)
	}
	if _, err := io.WriteString(streams.ErrOut, summary); err != nil {
		return err
	}
	return nil
}

// checkClusterRole fails early when the role is missing (a server that is
// not Stella, or roles not installed), instead of binding a role that grants
// nothing. A caller who may not read ClusterRoles is given the benefit of the
// doubt.
func checkClusterRole(ctx context.Context, client kubernetes.Interface, clusterRole string) error {
	_, err := client.RbacV1().ClusterRoles().Get(ctx, clusterRole, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("ClusterRole %s does not exist on the server: is this a Stella control plane? (stella serve installs it at start)", clusterRole)
	case apierrors.IsForbidden(err):
		return nil
	case err != nil:
		return fmt.Errorf("read ClusterRole %s: %w", clusterRole, err)
	}
	return nil
}

// userKubeconfigFor copies how the caller reaches the server: the resolved
// REST config already reflects --server, --context and the other overrides.
func userKubeconfigFor(c *rest.Config, cluster, user string, certPEM, keyPEM []byte, namespace string) (userKubeconfig, error) {
	caData := c.CAData
	if len(caData) == 0 && c.CAFile != "" {
		data, err := os.ReadFile(c.CAFile)
		if err != nil {
			return userKubeconfig{}, fmt.Errorf("read the server's CA from %s: %w", c.CAFile, err)
		}
		caData = data
	}
	return userKubeconfig{
		ClusterName:   cluster,
		Server:        c.Host,
		CAData:        caData,
		TLSServerName: c.ServerName,
		Insecure:      c.Insecure,
		User:          user,
		CertPEM:       certPEM,
		KeyPEM:        keyPEM,
		Namespace:     namespace,
	}, nil
}

// clusterName keeps the caller's name for the cluster, so the new user's
// context reads the same ("alice@stella"). --cluster and --context win over
// the kubeconfig, as they do for the connection itself.
func clusterName(raw clientcmdapi.Config, contextFlag, clusterFlag string) string {
	if clusterFlag != "" {
		return clusterFlag
	}
	ctxName := raw.CurrentContext
	if contextFlag != "" {
		ctxName = contextFlag
	}
	if c, ok := raw.Contexts[ctxName]; ok {
		return c.Cluster
	}
	return ""
}

func groupList(groups []string) string {
	if len(groups) == 0 {
		return "none"
	}
	return strings.Join(groups, ", ")
}
