package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/evidence/s3store"
)

func logCommand() *cobra.Command {
	var dataDir, evidenceDir string
	var s3 func() *s3store.Options
	logCmd := &cobra.Command{Use: "log", Short: "Look after the evidence transparency log on this machine"}
	repair := &cobra.Command{
		Use:   "repair",
		Short: "Rebuild a damaged transparency log from the sealed statements in the evidence store",
		Long: `Rebuild the entries of the evidence transparency log after the server refused
to start because they are damaged or missing. The log keeps the latest
checkpoint it signed apart from its entries (evidence/log/checkpoint); repair
keeps every record still whole in the entries file where it was, and finds
each lost entry among the sealed statements of the evidence store (the blobs
of the evidence directory, or the bucket of --evidence-s3-*), until the
entries have that checkpoint's root again. It signs nothing: when the store
cannot reproduce the signed root, it refuses and changes nothing, and the log
must be restored from a backup. The damaged file is kept beside the new one
as entries.damaged-<time>.

Stop the server first: repair refuses to run while a server holds the log.`,
		Example: "  stella log repair --data-dir /var/lib/stella",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if evidenceDir == "" {
				evidenceDir = filepath.Join(dataDir, "evidence")
			}
			var store evidence.BlobStore
			if o := s3(); o != nil {
				s3Store, err := s3store.New(*o)
				if err != nil {
					return err
				}
				store = s3Store
			}
			r, err := evidence.RepairLog(evidenceDir, store)
			if err != nil {
				return fmt.Errorf("repair the transparency log of %s: %w", evidenceDir, err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), describeRepair(r))
			return err
		},
	}
	repair.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the server ($STELLA_DATA_DIR)")
	repair.Flags().StringVar(&evidenceDir, "evidence-dir", "", "evidence directory (default: evidence in the data directory)")
	s3 = s3store.AddFlags(repair.Flags())
	logCmd.AddCommand(repair)
	return logCmd
}

// describeRepair says what a repair did, in a few lines.
func describeRepair(r evidence.LogRepair) string {
	if r.Intact {
		return fmt.Sprintf("the log's %d signed entries are intact; nothing was changed", r.Entries)
	}
	lines := []string{fmt.Sprintf("the log has its %d signed entries and their signed root again: %d read back from the damaged file, %d restored from %d sealed statements",
		r.Entries, r.FromFile, len(r.Restored), r.Statements)}
	if len(r.Restored) > 0 {
		indexes := make([]string, len(r.Restored))
		for i, index := range r.Restored {
			indexes[i] = fmt.Sprint(index)
		}
		lines = append(lines, "restored entries: "+strings.Join(indexes, ", "))
	}
	if r.Dropped > 0 {
		lines = append(lines, fmt.Sprintf("left out %d whole records written after the checkpoint: never acknowledged, no packet was sealed with them", r.Dropped))
	}
	if len(r.Unreadable) > 0 {
		lines = append(lines, fmt.Sprintf("%d blobs of the store could not be read and were not used", len(r.Unreadable)))
	}
	if r.DamagedCopy != "" {
		lines = append(lines, "the damaged file is kept at "+r.DamagedCopy)
	}
	return strings.Join(lines, "\n")
}
