package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evaluation"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/inputs"
)

// exitReplayMismatch ends a replay whose decision came out different.
const exitReplayMismatch = 7

func replayCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var keyFile, checkpointKeyFile string
	var whatIf bool
	cmd := &cobra.Command{
		Use:   "replay FILE | replay promotion NAME [--what-if]",
		Short: "Decide a sealed decision again from its frozen inputs and compare",
		Long: `Verify an evidence packet (as 'stellactl evidence verify' does), then run the
gate evaluation again on the frozen inputs its decision recorded, with this
stellactl's evaluators, and compare the result byte for byte with the sealed
record: the same inputs must give the same decision and determinism hash.
'replay promotion NAME' exports the promotion's packet from the server first.
With --what-if it also decides the same promotion again with today's gates,
scan reports, approvals and clock on the server, and shows what would change.

Exit codes: as for evidence verify, and 7 when the replayed decision differs
(the differing lines are printed).`,
		Example: "  stellactl replay decision.tar --key stella.pub\n  stellactl replay promotion shop-2.3.1-to-prod",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var packet *evidence.Packet
			var err error
			switch {
			case len(args) == 2 && args[0] == "promotion":
				packet, err = exportPacket(cmd.Context(), f, args[1], false)
			case len(args) == 1:
				packet, err = readPacketFile(args[0])
			default:
				return fmt.Errorf("want a packet file, or: replay promotion NAME")
			}
			if err != nil {
				return err
			}
			st, err := verifyPacket(packet, keyFile, checkpointKeyFile)
			if err != nil {
				return err
			}
			if err := replay(streams.Out, st); err != nil || !whatIf {
				return err
			}
			return decideToday(cmd.Context(), f, streams.Out, st)
		},
	}
	cmd.Flags().BoolVar(&whatIf, "what-if", false, "also decide the promotion again with today's gates, reports and clock, and show what would change")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM public key that must have signed the envelope (default: the one in the packet)")
	cmd.Flags().StringVar(&checkpointKeyFile, "checkpoint-key", "", "note verifier key of the log (default: the one in the packet)")
	return cmd
}

// decideToday evaluates the sealed decision's promotion with what the
// server holds now, creating nothing, and compares it with the sealed one.
func decideToday(ctx context.Context, f cmdutil.Factory, out io.Writer, st *evidence.Statement) error {
	var pred evidence.DecisionPredicate
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		return err
	}
	c, _, err := clientFor(f)
	if err != nil {
		return err
	}
	in := pred.Record.Inputs
	promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: pred.Namespace, Name: in.Promotion.Name, UID: in.Promotion.UID}, Spec: in.Promotion.Spec}
	if started, err := time.Parse(time.RFC3339, in.Promotion.StartedAt); err == nil {
		promo.Status.StartedAt = &metav1.Time{Time: started}
	}
	ex, err := inputs.Explain(ctx, inputs.ListReader{Reader: c}, promo, time.Now())
	if err != nil {
		return fmt.Errorf("decide %s with today's inputs: %w", promo.Name, err)
	}
	then := map[string]v1alpha1.GateEvaluation{}
	for _, g := range pred.Record.Gates {
		then[g.Name] = g
	}
	fmt.Fprintf(out, "\nwhat if decided now (%s), with today's gates, scan reports and approvals:\n", ex.Decision.Inputs.Clock)
	var rows [][]any
	seen := map[string]bool{}
	for _, g := range ex.Gates {
		seen[g.Name] = true
		was := "-"
		if t, ok := then[g.Name]; ok {
			was = string(t.Result)
		}
		rows = append(rows, []any{g.Name, was, string(g.Result), strings.Join(g.ReasonCodes, ",")})
	}
	for _, g := range pred.Record.Gates {
		if !seen[g.Name] {
			rows = append(rows, []any{g.Name, string(g.Result), "-", "(no longer applies)"})
		}
	}
	if err := printTable(out, []string{"Gate", "Then", "Now", "Reasons now"}, rows); err != nil {
		return err
	}
	change := "unchanged"
	if ex.Decision.Result != pred.Record.Result || !slices.Equal(ex.Decision.ReasonCodes, pred.Record.ReasonCodes) {
		change = "would change"
	}
	_, err = fmt.Fprintf(out, "decision: %s %v then, %s %v now (%s)\n", pred.Record.Result, pred.Record.ReasonCodes, ex.Decision.Result, ex.Decision.ReasonCodes, change)
	return err
}

func readPacketFile(path string) (*evidence.Packet, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	p, err := evidence.ReadPacket(file)
	if err != nil {
		return nil, verificationExit(fmt.Errorf("%s: %w", path, err))
	}
	return p, nil
}

// replay decides the statement's decision again and reports whether it came
// out the same.
func replay(out io.Writer, st *evidence.Statement) error {
	if st.PredicateType != evidence.PredicateDecision {
		return fmt.Errorf("replay decides decisions again; this packet holds %s", st.PredicateType)
	}
	var pred evidence.DecisionPredicate
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		return verificationExit(fmt.Errorf("%w: the decision predicate: %v", evidence.ErrMalformed, err))
	}
	replayed, _, err := (&evaluation.Evaluator{}).Evaluate(pred.Record.Inputs)
	if err != nil {
		return verificationExit(fmt.Errorf("%w: %v", evidence.ErrMalformed, err))
	}
	diff, err := recordDiff(pred.Record, replayed)
	if err != nil {
		return err
	}
	hash, err := replayed.Hash()
	if err != nil {
		return err
	}
	if diff == "" && hash == pred.DeterminismHash {
		if _, err := fmt.Fprintf(out, "replayed %s/%s: identical, %s %v, determinism hash %s\n",
			pred.Namespace, pred.Promotion, replayed.Result, replayed.ReasonCodes, hash); err != nil {
			return err
		}
		return printCounted(out, replayed)
	}
	fmt.Fprintf(out, "replayed %s/%s: DIFFERENT (sealed %s, replayed %s)\n%s", pred.Namespace, pred.Promotion, pred.DeterminismHash, hash, diff)
	return &exitError{code: exitReplayMismatch, err: fmt.Errorf("the replayed decision differs from the sealed one")}
}

// printCounted names the approvals the replayed decision counted, each by
// its UID and the promotion UID it is bound to, which is the UID of the
// promotion decided on: the replay counted them under the same rule.
func printCounted(out io.Writer, r decision.Record) error {
	for _, a := range r.CountedApprovals {
		if _, err := fmt.Fprintf(out, "  gate %s counted approval %s (uid %s): %s by %s, bound to promotion uid %s\n",
			a.Gate, a.Name, a.UID, a.Decision, a.Approver, a.PromotionUID); err != nil {
			return err
		}
	}
	return nil
}

// recordDiff lists the lines of the indented JSON of two records that
// differ ("-" sealed, "+" replayed), or "" when they are the same.
func recordDiff(sealed, replayed decision.Record) (string, error) {
	a, err := indented(sealed)
	if err != nil {
		return "", err
	}
	b, err := indented(replayed)
	if err != nil {
		return "", err
	}
	if a == b {
		return "", nil
	}
	return lineDiff(strings.Split(a, "\n"), strings.Split(b, "\n")), nil
}

func indented(r decision.Record) (string, error) {
	c, err := r.Canonical()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	err = json.Indent(&buf, c, "", "  ")
	return buf.String(), err
}

// lineDiff is a minimal line diff by longest common subsequence; records
// are a few hundred lines.
func lineDiff(a, b []string) string {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+ %s\n", b[j])
			j++
		default:
			fmt.Fprintf(&out, "- %s\n", a[i])
			i++
		}
	}
	return out.String()
}
