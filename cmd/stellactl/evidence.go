package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/tlog"
)

// Exit codes of evidence verify and log verify, so that scripts can tell
// what failed.
const (
	exitMalformed      = 2
	exitBadSignature   = 3
	exitDigestMismatch = 4
	exitBadProof       = 5
	exitUnknownKey     = 6
)

// exitError ends stellactl with a code of its own.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// verificationExit gives a verification failure its exit code.
func verificationExit(err error) error {
	for _, c := range []struct {
		kind error
		code int
	}{
		{evidence.ErrBadSignature, exitBadSignature}, {evidence.ErrDigestMismatch, exitDigestMismatch},
		{evidence.ErrBadProof, exitBadProof}, {evidence.ErrBadCheckpoint, exitBadProof},
		{evidence.ErrUnknownKey, exitUnknownKey}, {evidence.ErrMalformed, exitMalformed},
	} {
		if errors.Is(err, c.kind) {
			return &exitError{code: c.code, err: err}
		}
	}
	return err
}

func evidenceCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Export and verify the sealed evidence of promotions",
	}
	cmd.AddCommand(evidenceExportCommand(f, streams), evidenceVerifyCommand(streams))
	return cmd
}

func evidenceExportCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var out string
	var rollout bool
	cmd := &cobra.Command{
		Use:   "export PROMOTION [-o FILE] [--rollout]",
		Short: "Write the sealed decision of a promotion to a tar file that verifies offline",
		Long: `Write the sealed evidence of a promotion's decision (or, with --rollout, of
its finished deployment or rollback) to a tar archive: the
in-toto statement, its DSSE envelope, its log entry (the leaf), the log
checkpoint and the inclusion proof, and the server's public keys (docs/evidence.md
describes every byte). 'stellactl evidence verify' checks it on any
machine, with no access to the server.

Reading evidence needs the stella-auditor ClusterRole (a ClusterRoleBinding:
stellactl auth create-user NAME --role auditor).`,
		Example: "  stellactl evidence export shop-2.3.1-to-prod -o decision.tar",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = args[0] + ".evidence.tar"
			}
			packet, err := exportPacket(cmd.Context(), f, args[0], rollout)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := packet.WriteTar(&buf); err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			_, err = fmt.Fprintf(streams.Out, "evidence of promotion %s written to %s\n", args[0], out)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (default: PROMOTION.evidence.tar)")
	cmd.Flags().BoolVar(&rollout, "rollout", false, "export the deployment (or rollback) record of the finished rollout instead of the decision")
	return cmd
}

// exportPacket reads a promotion's sealed record from the server: its
// decision, or with rollout its deployment or rollback record.
func exportPacket(ctx context.Context, f cmdutil.Factory, promotion string, rollout bool) (*evidence.Packet, error) {
	c, ns, err := clientFor(f)
	if err != nil {
		return nil, err
	}
	cs, err := clientset(f)
	if err != nil {
		return nil, err
	}
	// An archived promotion's packets are in its archive record, as they
	// were in the API; the blobs and log entries they name stay served.
	promo, archived, err := promotionOrArchived(ctx, c, cs, ns, promotion)
	if err != nil {
		return nil, err
	}
	if promo.Status.EvidencePacket == "" {
		return nil, fmt.Errorf("promotion %s has no evidence yet: its decision is not final, or the server keeps no evidence", promotion)
	}
	name := promo.Status.EvidencePacket
	if rollout {
		var list v1alpha1.EvidencePacketList
		if archived != nil {
			list.Items = archived.EvidencePackets
		} else if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelPromotion: v1alpha1.LabelValue(promotion)}); err != nil {
			return nil, err
		}
		name = ""
		for _, p := range list.Items {
			if recordOf(&p, promo) && (p.Spec.Type == v1alpha1.EvidenceDeployment || p.Spec.Type == v1alpha1.EvidenceRollback) {
				name = p.Name
			}
		}
		if name == "" {
			return nil, fmt.Errorf("promotion %s has no rollout record yet: it has not finished deploying (phase %s)", promotion, promo.Status.Phase)
		}
	}
	obj := &v1alpha1.EvidencePacket{}
	if archived != nil {
		if obj, err = archivedPacket(archived, name); err != nil {
			return nil, err
		}
	} else if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		return nil, err
	}
	if obj.Status.Phase != v1alpha1.EvidenceSealed {
		return nil, fmt.Errorf("EvidencePacket %s is %q, not Sealed yet; try again shortly", obj.Name, obj.Status.Phase)
	}
	get, err := evidenceGetter(f)
	if err != nil {
		return nil, err
	}
	p := &evidence.Packet{Checkpoint: []byte(obj.Status.Checkpoint),
		Proof: evidence.Proof{Index: obj.Status.LogIndex, Hashes: obj.Status.InclusionProof}}
	for _, part := range []struct {
		path string
		into *[]byte
	}{
		{blobPath(obj.Spec.ContentDigest), &p.Statement},
		{blobPath(obj.Status.EnvelopeDigest), &p.Envelope},
		{evidence.PathEntries + obj.Status.LogIndex, &p.Leaf},
		{evidence.PathKeys + obj.Status.KeyID + ".pub", &p.SigningKey},
		{evidence.PathCheckpointKey, &p.CheckpointKey},
	} {
		if *part.into, err = get(ctx, part.path); err != nil {
			return nil, err
		}
	}
	obj.ManagedFields = nil
	p.Object, err = json.MarshalIndent(obj, "", "  ")
	return p, err
}

// recordOf says whether packet is a record of promo itself, not of an
// earlier promotion deleted and created again under its name. Packets
// sealed before they named their promotion's UID are told apart by age.
func recordOf(packet *v1alpha1.EvidencePacket, promo *v1alpha1.Promotion) bool {
	if packet.Spec.Promotion != promo.Name {
		return false
	}
	if packet.Spec.PromotionUID != "" {
		return packet.Spec.PromotionUID == promo.UID
	}
	return !packet.CreationTimestamp.Before(&promo.CreationTimestamp)
}

func blobPath(d v1alpha1.Digest) string {
	return evidence.PathBlobs + "sha256/" + strings.TrimPrefix(string(d), "sha256:")
}

// evidenceGetter reads a path under /evidence/v1/ of the server.
func evidenceGetter(f cmdutil.Factory) (func(context.Context, string) ([]byte, error), error) {
	cs, err := clientset(f)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, path string) ([]byte, error) {
		path, query, _ := strings.Cut(path, "?")
		values, err := url.ParseQuery(query)
		if err != nil {
			return nil, err
		}
		data, status, err := callServer(ctx, cs, http.MethodGet, evidence.PathPrefix+path, values, nil)
		switch {
		case status == http.StatusForbidden:
			return nil, fmt.Errorf("forbidden: reading %s%s needs the stella-auditor ClusterRole, bound cluster-wide", evidence.PathPrefix, path)
		case status == http.StatusNotFound:
			return nil, fmt.Errorf("read %s%s: %w (does this server keep evidence?)", evidence.PathPrefix, path, err)
		case err != nil:
			return nil, fmt.Errorf("read %s%s from the server: %w", evidence.PathPrefix, path, err)
		}
		return data, nil
	}, nil
}

// clientset is a Kubernetes clientset for the server of the kubeconfig.
func clientset(f cmdutil.Factory) (*kubernetes.Clientset, error) {
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// callServer sends one request to a path the API server serves beside the
// API (/evidence/v1/, /advisories/v1/), behind its authentication, and
// returns the answer, its status code, and an error for any status but 2xx.
func callServer(ctx context.Context, cs *kubernetes.Clientset, method, path string, params url.Values, zipBody []byte) ([]byte, int, error) {
	req := cs.Discovery().RESTClient().Verb(method).AbsPath(path)
	for k, v := range params {
		req = req.Param(k, v[0])
	}
	if zipBody != nil {
		req = req.SetHeader("Content-Type", "application/zip").Body(zipBody)
	}
	res := req.Do(ctx)
	status := 0
	res.StatusCode(&status)
	data, err := res.Raw()
	return data, status, err
}

func evidenceVerifyCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var keyFile, checkpointKeyFile string
	cmd := &cobra.Command{
		Use:   "verify FILE [--key PUB.pem] [--checkpoint-key FILE]",
		Short: "Verify an exported evidence packet, offline",
		Long: `Verify an evidence packet written by 'stellactl evidence export', with no
access to any server: the envelope's signature, that the statement is what was
signed, the checkpoint's signature, and the proof that the log holds the
statement. Without --key and --checkpoint-key the public keys inside the packet
are trusted, which proves the packet is whole but not who made it: pass the
server's keys, obtained separately, for that.

Exit codes: 0 verified; 1 could not run; 2 malformed or truncated packet, or
unknown predicate type; 3 bad signature; 4 digest mismatch; 5 bad inclusion
proof or checkpoint; 6 signed by a key not trusted.`,
		Example: "  stellactl evidence verify decision.tar --key stella-signing.pub",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			packet, err := readPacketFile(args[0])
			if err != nil {
				return err
			}
			st, err := verifyPacket(packet, keyFile, checkpointKeyFile)
			if err != nil {
				return err
			}
			return printVerified(streams.Out, packet, st, keyFile == "")
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM public key that must have signed the envelope (default: the one in the packet)")
	cmd.Flags().StringVar(&checkpointKeyFile, "checkpoint-key", "", "note verifier key of the log (default: the one in the packet)")
	return cmd
}

// verifyPacket verifies a packet with the keys in these files, or with
// the packet's own where a path is empty.
func verifyPacket(packet *evidence.Packet, keyFile, checkpointKeyFile string) (*evidence.Statement, error) {
	key, err := readOptional(keyFile)
	if err != nil {
		return nil, err
	}
	cpKey, err := readOptional(checkpointKeyFile)
	if err != nil {
		return nil, err
	}
	trust, err := packet.TrustOf(key, cpKey)
	if err != nil {
		return nil, verificationExit(err)
	}
	st, err := packet.Verify(trust)
	if err != nil {
		return nil, verificationExit(err)
	}
	return st, nil
}

func readOptional(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	return os.ReadFile(path)
}

func printVerified(out io.Writer, p *evidence.Packet, st *evidence.Statement, ownKey bool) error {
	fmt.Fprintf(out, "verified: %s\n", st.PredicateType)
	for _, s := range st.Subject {
		fmt.Fprintf(out, "  subject %s@sha256:%s\n", s.Name, s.Digest["sha256"])
	}
	fmt.Fprintf(out, "  log entry %s, statement %s\n", p.Proof.Index, evidence.DigestOf(p.Statement))
	if st.PredicateType == evidence.PredicateDecision {
		var pred evidence.DecisionPredicate
		if err := json.Unmarshal(st.Predicate, &pred); err == nil {
			fmt.Fprintf(out, "  promotion %s/%s: %s %v, determinism hash %s\n", pred.Namespace, pred.Promotion, pred.Record.Result,
				pred.Record.ReasonCodes, pred.DeterminismHash)
		}
	}
	if ownKey {
		fmt.Fprintln(out, "note: trusted the public keys inside the packet; pass --key and --checkpoint-key to check who signed it")
	}
	return nil
}

func logCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Read and check the server's transparency log",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "checkpoint",
		Short: "Print the log's current signed checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			get, err := evidenceGetter(f)
			if err != nil {
				return err
			}
			cp, err := get(cmd.Context(), evidence.PathCheckpoint)
			if err != nil {
				return err
			}
			_, err = streams.Out.Write(cp)
			return err
		},
	}, logVerifyCommand(f, streams))
	return cmd
}

func logVerifyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var from, to, checkpointKeyFile string
	cmd := &cobra.Command{
		Use:   "verify --from OLD [--to NEW] [--checkpoint-key FILE]",
		Short: "Check that the log only grew between two checkpoints",
		Long: `Check that the log of checkpoint NEW extends the log of checkpoint OLD, with a
consistency proof from the server: nothing in OLD was changed or removed. OLD
and NEW are files holding signed checkpoints (stellactl log checkpoint, or the
checkpoint of an exported packet); without --to the server's current checkpoint
is NEW. Exit codes as for evidence verify.`,
		Example: "  stellactl log checkpoint > monday.cp\n  stellactl log verify --from monday.cp",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			get, err := evidenceGetter(f)
			if err != nil {
				return err
			}
			vkey, err := readOptional(checkpointKeyFile)
			if err == nil && vkey == nil {
				vkey, err = get(cmd.Context(), evidence.PathCheckpointKey)
			}
			if err != nil {
				return err
			}
			verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
			if err != nil {
				return verificationExit(fmt.Errorf("%w: checkpoint key: %v", evidence.ErrMalformed, err))
			}
			oldCP, err := os.ReadFile(from)
			if err != nil {
				return err
			}
			newCP, err := readOptional(to)
			if err == nil && newCP == nil {
				newCP, err = get(cmd.Context(), evidence.PathCheckpoint)
			}
			if err != nil {
				return err
			}
			older, err := tlog.VerifyCheckpoint(oldCP, verifier.Name(), verifier)
			if err != nil {
				return verificationExit(fmt.Errorf("%w: --from: %v", evidence.ErrBadCheckpoint, err))
			}
			newer, err := tlog.VerifyCheckpoint(newCP, verifier.Name(), verifier)
			if err != nil {
				return verificationExit(fmt.Errorf("%w: --to: %v", evidence.ErrBadCheckpoint, err))
			}
			raw, err := get(cmd.Context(), fmt.Sprintf("%s?from=%d&to=%d", evidence.PathConsistency, older.Size, newer.Size))
			if err != nil {
				return err
			}
			var proof evidence.Proof
			if err := json.Unmarshal(raw, &proof); err != nil {
				return verificationExit(fmt.Errorf("%w: consistency proof: %v", evidence.ErrMalformed, err))
			}
			hashes, err := evidence.DecodeHashes(proof.Hashes)
			if err != nil {
				return verificationExit(fmt.Errorf("%w: consistency proof: %v", evidence.ErrMalformed, err))
			}
			if err := tlog.VerifyConsistency(older, newer, hashes); err != nil {
				return verificationExit(fmt.Errorf("%w: %v", evidence.ErrBadProof, err))
			}
			_, err = fmt.Fprintf(streams.Out, "consistent: the log of %d entries extends the log of %d entries\n", newer.Size, older.Size)
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "file with the older signed checkpoint")
	cmd.Flags().StringVar(&to, "to", "", "file with the newer signed checkpoint (default: the server's current one)")
	cmd.Flags().StringVar(&checkpointKeyFile, "checkpoint-key", "", "note verifier key of the log (default: the server's)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}
