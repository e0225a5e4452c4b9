package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
	"github.com/stella-ops/stella/internal/pki"
)

const agentExample = `  # Let the agent host-1 of namespace shop join, within the hour
  stellactl agent join-token host-1 -n shop --ttl 1h`

const revokeExample = `  # Cut the agent host-1 of namespace shop off at once
  stellactl agent revoke host-1 -n shop

  # Let its host back later, with a new identity
  stellactl delete agent host-1 -n shop
  stellactl agent join-token host-1 -n shop`

func agentCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Let stella-agents join, or cut them off",
	}
	cmd.AddCommand(joinTokenCommand(f, streams), revokeCommand(f, streams))
	return cmd
}

func joinTokenCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var (
		ttl          time.Duration
		capabilities []string
	)
	cmd := &cobra.Command{
		Use:   "join-token AGENT [--ttl 1h]",
		Short: "Print a one-time join token for an agent, and the command to run on its host",
		Long: `Create a one-time join token for the Agent AGENT of the namespace (-n), and
print the stella-agent command that uses it. The Agent is created when it does
not exist, with --capability (docker and compose by default).

With the token the agent asks the server for its own client certificate,
identity stella:agent:<namespace>:<name>. The server approves that request
only for the Agent the token names; the token is used up by it, and expires
after --ttl if unused. The agent renews its certificate itself before it
expires. With that identity the agent reads only its own Agent, the Targets
that name it and their DeployTasks, and writes only their status.`,
		Example: agentExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < time.Minute || ttl > 7*24*time.Hour {
				return fmt.Errorf("--ttl %s: give between 1m and 168h", ttl)
			}
			return runJoinToken(cmd.Context(), f, streams.Out, args[0], ttl, capabilities)
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token can be used")
	cmd.Flags().StringSliceVar(&capabilities, "capability", []string{"docker", "compose"}, "target types of a new Agent")
	return cmd
}

func runJoinToken(ctx context.Context, f cmdutil.Factory, out io.Writer, name string, ttl time.Duration, capabilities []string) error {
	c, ns, err := clientFor(f)
	if err != nil {
		return err
	}
	if err := ensureAgent(ctx, c, ns, name, capabilities); err != nil {
		return err
	}
	id, secret := randomToken(6), randomToken(16)
	expires := time.Now().Add(ttl).UTC()
	token := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: agentid.JoinTokenNamespace, Name: "bootstrap-token-" + id,
			Labels: map[string]string{v1alpha1.LabelAgentNamespace: ns, v1alpha1.LabelAgent: name},
		},
		Type: corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"token-id": id, "token-secret": secret, "expiration": expires.Format(time.RFC3339),
			"usage-bootstrap-authentication": "true", "auth-extra-groups": agentid.BootstrapGroup,
			"description": fmt.Sprintf("join token of stella-agent %s/%s", ns, name),
		},
	}
	if err := c.Create(ctx, token); err != nil {
		return fmt.Errorf("create the join token: %w", err)
	}
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	hash, err := caHash(cfg.CAData, cfg.CAFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Join token for Agent %s/%s, valid until %s and for one use:\n\n  %s.%s\n\n", ns, name, expires.Format(time.RFC3339), id, secret)
	fmt.Fprintf(out, "On the agent's host, run:\n\n  stella-agent run --server %s --ca-cert-hash %s \\\n    --join-token %s.%s --name %s -n %s\n",
		cfg.Host, hash, id, secret, name, ns)
	return nil
}

// ensureAgent creates the Agent unless it exists, and refuses a revoked
// one: the server would approve no certificate for it.
func ensureAgent(ctx context.Context, c client.Client, ns, name string, capabilities []string) error {
	agent := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, t := range capabilities {
		agent.Spec.Capabilities = append(agent.Spec.Capabilities, v1alpha1.TargetType(t))
	}
	err := c.Create(ctx, agent)
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create Agent %s/%s: %w", ns, name, err)
		}
		return nil
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(agent), agent); err != nil {
		return fmt.Errorf("read Agent %s/%s: %w", ns, name, err)
	}
	if agent.Spec.Revoked {
		return fmt.Errorf("agent %s/%s is revoked: delete it first (stellactl delete agent %s -n %s), then make its join token", ns, name, name, ns)
	}
	return nil
}

func revokeCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke AGENT",
		Short: "Cut an agent off at once: its certificate is refused and not renewed",
		Long: `Revoke the Agent AGENT of the namespace (-n): set its spec.revoked, and
delete the join tokens made for it that are still unused.

From the moment the server sees the change (it watches the Agents, so within
milliseconds) every request made with the agent's certificate is refused, and
no new certificate is approved for it; the Agent turns Ready=False with reason
Revoked. A revocation cannot be undone: to let the host back, delete the Agent
and join the host again with a new token.`,
		Example: revokeExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRevoke(cmd.Context(), f, streams.Out, args[0])
		},
	}
}

func runRevoke(ctx context.Context, f cmdutil.Factory, out io.Writer, name string) error {
	c, ns, err := clientFor(f)
	if err != nil {
		return err
	}
	agent := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":true}}`))
	if err := c.Patch(ctx, agent, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("agent %s/%s does not exist: its certificate, if any, is refused already", ns, name)
		}
		return fmt.Errorf("revoke Agent %s/%s: %w", ns, name, err)
	}
	fmt.Fprintf(out, "Agent %s/%s is revoked: the server refuses its certificate from now on.\n", ns, name)
	tokens := &corev1.SecretList{}
	if err := c.List(ctx, tokens, client.InNamespace(agentid.JoinTokenNamespace),
		client.MatchingLabels{v1alpha1.LabelAgentNamespace: ns, v1alpha1.LabelAgent: name}); err != nil {
		return fmt.Errorf("list the join tokens of Agent %s/%s: %w", ns, name, err)
	}
	for i := range tokens.Items {
		if err := c.Delete(ctx, &tokens.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete join token %s of Agent %s/%s: %w", tokens.Items[i].Name, ns, name, err)
		}
		fmt.Fprintf(out, "Deleted its unused join token %s.\n", tokens.Items[i].Name)
	}
	fmt.Fprintf(out, "To let the host back: stellactl delete agent %s -n %s, then stellactl agent join-token %s -n %s\n", name, ns, name, ns)
	return nil
}

// caHash is the hash the agent checks the server's CA against.
func caHash(data []byte, file string) (string, error) {
	if len(data) == 0 && file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return "", fmt.Errorf("read the server's CA: %w", err)
		}
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return "", fmt.Errorf("the kubeconfig has no CA certificate for the server: the agent could not check whom it joins")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("read the server's CA: %w", err)
	}
	return pki.CertHash(cert), nil
}

// randomToken is n random characters of [a-z2-7], which bootstrap tokens
// ([a-z0-9]) accept.
func randomToken(n int) string {
	return strings.ToLower(rand.Text())[:n]
}
