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
	output := newOutputFlags()
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
With -o json or yaml the outcome is printed as a Replay
(stellactl.stella-ops.org/v1): the sealed and replayed decisions, the lines
that differ, the approvals counted, and with --what-if today's comparison.

Exit codes: as for evidence verify, and 7 when the replayed decision differs
(the differing lines are printed).`,
		Example: "  stellactl replay decision.tar --key stella.pub\n  stellactl replay promotion shop-2.3.1-to-prod",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			printer, err := output.objectPrinter()
			if err != nil {
				return err
			}
			var packet *evidence.Packet
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
			result, err := replayStatement(st)
			if err != nil {
				return err
			}
			if printer == nil {
				if err := printReplay(streams.Out, result); err != nil {
					return err
				}
			}
			// A decision that does not replay is not worth comparing with today.
			if whatIf && result.Status.Identical {
				if result.Status.WhatIf, err = decideToday(cmd.Context(), f, st); err != nil {
					return err
				}
				if printer == nil {
					if err := printWhatIf(streams.Out, result.Status.WhatIf, result.Status.Sealed); err != nil {
						return err
					}
				}
			}
			if printer != nil {
				obj, err := printable(result)
				if err != nil {
					return err
				}
				if err := printer.PrintObj(obj, streams.Out); err != nil {
					return err
				}
			}
			return result.mismatch()
		},
	}
	output.addFlags(cmd)
	cmd.Flags().BoolVar(&whatIf, "what-if", false, "also decide the promotion again with today's gates, reports and clock, and show what would change")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM public key that must have signed the envelope (default: the one in the packet)")
	cmd.Flags().StringVar(&checkpointKeyFile, "checkpoint-key", "", "note verifier key of the log (default: the one in the packet)")
	return cmd
}

// Replay is what `replay -o json|yaml` prints: the sealed decision of a
// promotion, the same decision made again from its frozen inputs, and with
// --what-if the decision made with today's.
type Replay struct {
	metav1.TypeMeta `json:",inline"`
	// metadata names the decided promotion and its namespace.
	metav1.ObjectMeta `json:"metadata"`
	Status            ReplayStatus `json:"status"`
}

// ReplayStatus is the outcome of a replay.
type ReplayStatus struct {
	// Identical says the replayed record and determinism hash are the
	// sealed ones, byte for byte; when false, stellactl exits 7.
	Identical bool           `json:"identical"`
	Sealed    ReplayDecision `json:"sealed"`
	Replayed  ReplayDecision `json:"replayed"`
	// Differences are the lines of the records' indented JSON that differ,
	// "- " sealed and "+ " replayed.
	Differences []string `json:"differences,omitempty"`
	// CountedApprovals are the approvals the replayed decision counted.
	CountedApprovals []decision.CountedApproval `json:"countedApprovals,omitempty"`
	// WhatIf is the decision with today's inputs, with --what-if.
	WhatIf *WhatIf `json:"whatIf,omitempty"`
}

// ReplayDecision is one side of a replay.
type ReplayDecision struct {
	Result          v1alpha1.DecisionResult `json:"result"`
	ReasonCodes     []string                `json:"reasonCodes"`
	DeterminismHash v1alpha1.Digest         `json:"determinismHash"`
}

// WhatIf compares a sealed decision with the one today's gates, scan
// reports, approvals and clock give.
type WhatIf struct {
	// Clock is the time the decision was made at, now.
	Clock       string                  `json:"clock"`
	Result      v1alpha1.DecisionResult `json:"result"`
	ReasonCodes []string                `json:"reasonCodes"`
	// Changed says the result or its reason codes differ from the sealed
	// decision's.
	Changed bool         `json:"changed"`
	Gates   []WhatIfGate `json:"gates"`
}

// WhatIfGate is one gate's verdict then and now.
type WhatIfGate struct {
	Name string `json:"name"`
	// Then is the sealed verdict; empty when the gate did not apply then.
	Then v1alpha1.GateResult `json:"then,omitempty"`
	// Now is today's verdict; empty when the gate no longer applies.
	Now v1alpha1.GateResult `json:"now,omitempty"`
	// ReasonCodes are today's.
	ReasonCodes []string `json:"reasonCodes,omitempty"`
}

// mismatch is the exit of a replay whose decision came out different.
func (r *Replay) mismatch() error {
	if r.Status.Identical {
		return nil
	}
	return &exitError{code: exitReplayMismatch, err: fmt.Errorf("the replayed decision differs from the sealed one")}
}

// decideToday evaluates the sealed decision's promotion with what the
// server holds now, creating nothing, and compares it with the sealed one.
func decideToday(ctx context.Context, f cmdutil.Factory, st *evidence.Statement) (*WhatIf, error) {
	var pred evidence.DecisionPredicate
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		return nil, err
	}
	c, _, err := clientFor(f)
	if err != nil {
		return nil, err
	}
	in := pred.Record.Inputs
	promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: pred.Namespace, Name: in.Promotion.Name, UID: in.Promotion.UID}, Spec: in.Promotion.Spec}
	if started, err := time.Parse(time.RFC3339, in.Promotion.StartedAt); err == nil {
		promo.Status.StartedAt = &metav1.Time{Time: started}
	}
	ex, err := inputs.Explain(ctx, inputs.ListReader{Reader: c}, promo, time.Now())
	if err != nil {
		return nil, fmt.Errorf("decide %s with today's inputs: %w", promo.Name, err)
	}
	return compareToday(pred.Record, ex.Decision), nil
}

// compareToday sets today's decision beside the sealed one, gate by gate:
// today's gates in their order, then those that no longer apply.
func compareToday(sealed, today decision.Record) *WhatIf {
	w := &WhatIf{Clock: today.Inputs.Clock, Result: today.Result, ReasonCodes: today.ReasonCodes, Gates: []WhatIfGate{},
		Changed: today.Result != sealed.Result || !slices.Equal(today.ReasonCodes, sealed.ReasonCodes)}
	then := map[string]v1alpha1.GateEvaluation{}
	for _, g := range sealed.Gates {
		then[g.Name] = g
	}
	seen := map[string]bool{}
	for _, g := range today.Gates {
		seen[g.Name] = true
		w.Gates = append(w.Gates, WhatIfGate{Name: g.Name, Then: then[g.Name].Result, Now: g.Result, ReasonCodes: g.ReasonCodes})
	}
	for _, g := range sealed.Gates {
		if !seen[g.Name] {
			w.Gates = append(w.Gates, WhatIfGate{Name: g.Name, Then: g.Result})
		}
	}
	return w
}

// printWhatIf prints the comparison as a table and a line, and the sealed
// decision beside today's.
func printWhatIf(out io.Writer, w *WhatIf, sealed ReplayDecision) error {
	fmt.Fprintf(out, "\nwhat if decided now (%s), with today's gates, scan reports and approvals:\n", w.Clock)
	var rows [][]any
	for _, g := range w.Gates {
		then, now, reasons := string(g.Then), string(g.Now), strings.Join(g.ReasonCodes, ",")
		if then == "" {
			then = "-"
		}
		if now == "" {
			now, reasons = "-", "(no longer applies)"
		}
		rows = append(rows, []any{g.Name, then, now, reasons})
	}
	if err := printTable(out, []string{"Gate", "Then", "Now", "Reasons now"}, rows); err != nil {
		return err
	}
	change := "unchanged"
	if w.Changed {
		change = "would change"
	}
	_, err := fmt.Fprintf(out, "decision: %s %v then, %s %v now (%s)\n", sealed.Result, sealed.ReasonCodes, w.Result, w.ReasonCodes, change)
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
	r, err := replayStatement(st)
	if err != nil {
		return err
	}
	if err := printReplay(out, r); err != nil {
		return err
	}
	return r.mismatch()
}

// replayStatement decides the statement's decision again from its frozen
// inputs and compares the two records.
func replayStatement(st *evidence.Statement) (*Replay, error) {
	if st.PredicateType != evidence.PredicateDecision {
		return nil, fmt.Errorf("replay decides decisions again; this packet holds %s", st.PredicateType)
	}
	var pred evidence.DecisionPredicate
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		return nil, verificationExit(fmt.Errorf("%w: the decision predicate: %v", evidence.ErrMalformed, err))
	}
	replayed, _, err := (&evaluation.Evaluator{}).Evaluate(pred.Record.Inputs)
	if err != nil {
		return nil, verificationExit(fmt.Errorf("%w: %v", evidence.ErrMalformed, err))
	}
	diff, err := recordDiff(pred.Record, replayed)
	if err != nil {
		return nil, err
	}
	hash, err := replayed.Hash()
	if err != nil {
		return nil, err
	}
	r := &Replay{
		TypeMeta:   metav1.TypeMeta{APIVersion: stellactlGroupVersion.String(), Kind: "Replay"},
		ObjectMeta: metav1.ObjectMeta{Namespace: pred.Namespace, Name: pred.Promotion},
		Status: ReplayStatus{
			Identical:        diff == "" && hash == pred.DeterminismHash,
			Sealed:           ReplayDecision{Result: pred.Record.Result, ReasonCodes: pred.Record.ReasonCodes, DeterminismHash: pred.DeterminismHash},
			Replayed:         ReplayDecision{Result: replayed.Result, ReasonCodes: replayed.ReasonCodes, DeterminismHash: hash},
			CountedApprovals: replayed.CountedApprovals,
		},
	}
	if diff != "" {
		r.Status.Differences = strings.Split(strings.TrimSuffix(diff, "\n"), "\n")
	}
	return r, nil
}

// printReplay says whether the decision replayed, and names the approvals
// it counted or the lines that differ.
func printReplay(out io.Writer, r *Replay) error {
	s := r.Status
	if s.Identical {
		if _, err := fmt.Fprintf(out, "replayed %s/%s: identical, %s %v, determinism hash %s\n",
			r.Namespace, r.Name, s.Replayed.Result, s.Replayed.ReasonCodes, s.Replayed.DeterminismHash); err != nil {
			return err
		}
		return printCounted(out, s.CountedApprovals)
	}
	diff := ""
	for _, line := range s.Differences {
		diff += line + "\n"
	}
	_, err := fmt.Fprintf(out, "replayed %s/%s: DIFFERENT (sealed %s, replayed %s)\n%s", r.Namespace, r.Name, s.Sealed.DeterminismHash, s.Replayed.DeterminismHash, diff)
	return err
}

// printCounted names the approvals the replayed decision counted, each by
// its UID and the promotion UID it is bound to, which is the UID of the
// promotion decided on: the replay counted them under the same rule.
func printCounted(out io.Writer, counted []decision.CountedApproval) error {
	for _, a := range counted {
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
