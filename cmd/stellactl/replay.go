package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evaluation"
	"github.com/stella-ops/stella/internal/evidence"
)

// exitReplayMismatch ends a replay whose decision came out different.
const exitReplayMismatch = 7

func replayCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var keyFile, checkpointKeyFile string
	cmd := &cobra.Command{
		Use:   "replay FILE | replay promotion NAME",
		Short: "Decide a sealed decision again from its frozen inputs and compare",
		Long: `Verify an evidence packet (as 'stellactl evidence verify' does), then run the
gate evaluation again on the frozen inputs its decision recorded, with this
stellactl's evaluators, and compare the result byte for byte with the sealed
record: the same inputs must give the same decision and determinism hash.
'replay promotion NAME' exports the promotion's packet from the server first.

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
			key, err := readOptional(keyFile)
			if err != nil {
				return err
			}
			cpKey, err := readOptional(checkpointKeyFile)
			if err != nil {
				return err
			}
			trust, err := packet.TrustOf(key, cpKey)
			if err != nil {
				return verificationExit(err)
			}
			st, err := packet.Verify(trust)
			if err != nil {
				return verificationExit(err)
			}
			return replay(streams.Out, st)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM public key that must have signed the envelope (default: the one in the packet)")
	cmd.Flags().StringVar(&checkpointKeyFile, "checkpoint-key", "", "note verifier key of the log (default: the one in the packet)")
	return cmd
}

func readPacketFile(path string) (*evidence.Packet, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	p, err := evidence.ReadPacket(file)
	if err != nil {
		return nil, verificationExit(err)
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
		_, err := fmt.Fprintf(out, "replayed %s/%s: identical, %s %v, determinism hash %s\n",
			pred.Namespace, pred.Promotion, replayed.Result, replayed.ReasonCodes, hash)
		return err
	}
	fmt.Fprintf(out, "replayed %s/%s: DIFFERENT (sealed %s, replayed %s)\n%s", pred.Namespace, pred.Promotion, pred.DeterminismHash, hash, diff)
	return &exitError{code: exitReplayMismatch, err: fmt.Errorf("the replayed decision differs from the sealed one")}
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
