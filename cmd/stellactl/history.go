package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/evidence"
)

// HistoryEntry is one promotion into an environment as `stellactl history`
// prints it, whether it is still in the API or in the archive.
type HistoryEntry struct {
	metav1.TypeMeta `json:",inline"`
	// Metadata names the promotion: name, namespace, uid and creation time.
	metav1.ObjectMeta `json:"metadata"`
	Environment       string                  `json:"environment"`
	Release           string                  `json:"release"`
	Phase             v1alpha1.PromotionPhase `json:"phase,omitempty"`
	CreationRevision  string                  `json:"creationRevision,omitempty"`
	FinishedAt        *metav1.Time            `json:"finishedAt,omitempty"`
	// Archived is true for a promotion that left the API; Record is the
	// digest of its archive record.
	Archived bool            `json:"archived"`
	Record   v1alpha1.Digest `json:"record,omitempty"`
}

func historyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var since string
	output := newOutputFlags()
	cmd := &cobra.Command{
		Use:   "history ENVIRONMENT [--since DURATION|TIME]",
		Short: "List every promotion ever made into an environment",
		Long: `List the promotions into an environment, oldest first, in the order they ran
there: the recent ones the API holds and the older ones archived by the
environment's spec.promotionRetention, in one list. Reading the archive needs
the stella-auditor ClusterRole; without it only the API's promotions are
listed, and a warning says so.

--since keeps the promotions created since a time (RFC 3339, such as
2026-12-01T00:00:00Z) or within a duration (such as 72h).`,
		Example: "  stellactl history prod\n  stellactl history prod --since 168h -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			printer, err := output.objectPrinter()
			if err != nil {
				return err
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			entries, warning, err := promotionHistory(cmd.Context(), f, args[0])
			if err != nil {
				return err
			}
			if warning != "" {
				fmt.Fprintln(streams.ErrOut, "Warning: "+warning)
			}
			entries = slices.DeleteFunc(entries, func(e HistoryEntry) bool { return e.CreationTimestamp.Time.Before(from) })
			if printer != nil {
				list, err := printableList(entries)
				if err != nil {
					return err
				}
				return printer.PrintObj(list, streams.Out)
			}
			if len(entries) == 0 {
				_, err := fmt.Fprintf(streams.ErrOut, "No promotions into environment %s.\n", args[0])
				return err
			}
			rows := make([][]any, 0, len(entries))
			for _, e := range entries {
				finished, stored := "", "api"
				if e.FinishedAt != nil {
					finished = e.FinishedAt.UTC().Format(time.RFC3339)
				}
				if e.Archived {
					stored = "archive"
				}
				rows = append(rows, []any{e.Name, e.Release, string(e.Phase), e.CreationTimestamp.UTC().Format(time.RFC3339), finished, stored})
			}
			return printTable(streams.Out, []string{"PROMOTION", "RELEASE", "PHASE", "CREATED", "FINISHED", "STORED"}, rows)
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only promotions created since this time (RFC 3339) or within this duration (such as 72h)")
	output.addFlags(cmd)
	return cmd
}

// parseSince reads --since: a duration back from now, or a time; empty
// means from the beginning.
func parseSince(since string, now time.Time) (time.Time, error) {
	if since == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(since); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: a duration back from now is positive, such as 72h", since)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, since)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration such as 72h or a time such as 2026-12-01T00:00:00Z", since)
	}
	return t, nil
}

// promotionHistory lists the promotions into env, oldest first: the API's
// and the archive's, each once. warning says why the archive was not read.
func promotionHistory(ctx context.Context, f cmdutil.Factory, env string) ([]HistoryEntry, string, error) {
	c, ns, err := clientFor(f)
	if err != nil {
		return nil, "", err
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: env}, &v1alpha1.Environment{}); err != nil {
		return nil, "", err
	}
	var promos v1alpha1.PromotionList
	if err := c.List(ctx, &promos, client.InNamespace(ns)); err != nil {
		return nil, "", err
	}
	archived, warning, err := archivedHistory(ctx, f, ns, env)
	if err != nil {
		return nil, "", err
	}
	return mergeHistory(env, promos.Items, archived), warning, nil
}

// mergeHistory merges the promotions into env from the API with those of
// the archive, oldest first in the order they ran. A promotion in both (the
// archiver stored it and has not deleted it yet) is listed once, as the API
// shows it.
func mergeHistory(env string, promos []v1alpha1.Promotion, archived []archive.Entry) []HistoryEntry {
	var out []HistoryEntry
	inAPI := map[types.UID]bool{}
	for _, p := range promos {
		if p.Spec.Environment != env {
			continue
		}
		inAPI[p.UID] = true
		out = append(out, HistoryEntry{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, CreationTimestamp: p.CreationTimestamp},
			Environment: env, Release: p.Spec.Release, Phase: p.Status.Phase, CreationRevision: queueRevision(&p), FinishedAt: p.Status.FinishedAt})
	}
	for _, e := range archived {
		if inAPI[e.UID] {
			continue
		}
		out = append(out, HistoryEntry{ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: e.Namespace, UID: e.UID, CreationTimestamp: e.CreatedAt},
			Environment: e.Environment, Release: e.Release, Phase: e.Phase, CreationRevision: e.CreationRevision, FinishedAt: e.FinishedAt,
			Archived: true, Record: e.Record})
	}
	for i := range out {
		out[i].TypeMeta = metav1.TypeMeta{APIVersion: stellactlGroupVersion.String(), Kind: "PromotionHistoryEntry"}
	}
	slices.SortFunc(out, func(a, b HistoryEntry) int {
		return archive.Compare(archive.OrderOf(a.CreationRevision, a.FinishedAt, a.Name), archive.OrderOf(b.CreationRevision, b.FinishedAt, b.Name))
	})
	return out
}

// queueRevision is the promotion's place in its environment's queue: its
// recorded creation revision, or, before the server wrote it, the revision
// it will record.
func queueRevision(p *v1alpha1.Promotion) string {
	if p.Status.CreationRevision == "" && p.Status.Phase == "" {
		return p.ResourceVersion
	}
	return p.Status.CreationRevision
}

// archivedHistory reads the archive's list of env. A server that archives
// nothing, or a user who may not read it, gives an empty list and a warning.
func archivedHistory(ctx context.Context, f cmdutil.Factory, ns, env string) ([]archive.Entry, string, error) {
	cs, err := clientset(f)
	if err != nil {
		return nil, "", err
	}
	data, status, err := callServer(ctx, cs, http.MethodGet, archive.EnvironmentPath(ns, env), nil, nil)
	switch {
	case status == http.StatusForbidden:
		return nil, "the archive of older promotions was not read: reading it needs the stella-auditor ClusterRole; listing only the promotions the API holds", nil
	case status == http.StatusNotFound:
		return nil, "the server keeps no archive (it keeps no evidence); listing only the promotions the API holds", nil
	case err != nil:
		return nil, "", fmt.Errorf("read the archive of environment %s: %w", env, err)
	}
	entries, err := archive.ParseList(data)
	return entries, "", err
}

// archivedPromotion reads the archive record of the newest promotion named
// name that left the API. It answers notFound, the API's own answer, when
// the archive has none or may not be read, so that a missing promotion is
// reported as before.
func archivedPromotion(ctx context.Context, cs *kubernetes.Clientset, ns, name string, notFound error) (*archive.Record, v1alpha1.Digest, error) {
	data, status, err := callServer(ctx, cs, http.MethodGet, archive.PromotionPath(ns, name), nil, nil)
	switch {
	case status == http.StatusNotFound || status == http.StatusForbidden:
		return nil, "", notFound
	case err != nil:
		return nil, "", errors.Join(notFound, fmt.Errorf("read the archive: %w", err))
	}
	entries, err := archive.ParseList(data)
	if err != nil {
		return nil, "", err
	}
	if len(entries) == 0 {
		return nil, "", notFound
	}
	digest := entries[len(entries)-1].Record
	data, _, err = callServer(ctx, cs, http.MethodGet, evidence.PathPrefix+blobPath(digest), nil, nil)
	if err != nil {
		return nil, "", fmt.Errorf("read the archive record %s of promotion %s: %w", digest, name, err)
	}
	if err := evidence.CheckContent(digest, data); err != nil {
		return nil, "", fmt.Errorf("archive record of promotion %s: %w", name, err)
	}
	record, err := archive.ParseRecord(data)
	return record, digest, err
}

// promotionOrArchived reads a promotion from the API, or, when the API has
// it no more, from the archive; record is nil for a promotion in the API.
func promotionOrArchived(ctx context.Context, c client.Reader, cs *kubernetes.Clientset, ns, name string) (*v1alpha1.Promotion, *archive.Record, error) {
	promo := &v1alpha1.Promotion{}
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, promo)
	if !apierrors.IsNotFound(err) {
		return promo, nil, err
	}
	record, _, err := archivedPromotion(ctx, cs, ns, name, err)
	if err != nil {
		return nil, nil, err
	}
	return &record.Promotion, record, nil
}

// archivedPacket is the archived promotion's packet named name.
func archivedPacket(record *archive.Record, name string) (*v1alpha1.EvidencePacket, error) {
	for i := range record.EvidencePackets {
		if record.EvidencePackets[i].Name == name {
			return &record.EvidencePackets[i], nil
		}
	}
	return nil, fmt.Errorf("the archive record of promotion %s holds no EvidencePacket %s", record.Promotion.Name, strings.TrimSpace(name))
}
