package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/stella-ops/stella/internal/controlplane"
	kubecfg "github.com/stella-ops/stella/internal/kubeconfig"
)

func snapshotCommand() *cobra.Command {
	snapshot := &cobra.Command{Use: "snapshot", Short: "Back up a running server, and restore a data directory from a backup"}
	snapshot.AddCommand(snapshotSaveCommand(), snapshotRestoreCommand())
	return snapshot
}

func snapshotSaveCommand() *cobra.Command {
	var dataDir, kubeconfig string
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a backup of a running server into FILE",
		Long: `Save a backup of a running 'stella serve' (embedded etcd) into FILE, while
it serves: a consistent snapshot of etcd, the data directory's stella.json,
the PKI, and the evidence directory (signing keys, transparency log and
blobs), in one gzip-compressed tar with the sha256 of every member.

The server makes the archive; this command asks for it with the admin
credential (only cluster-admin may read /snapshot/v1/), checks every member
against the manifest, and writes FILE only when the archive is complete.
FILE holds private keys: keep it as safe as the data directory.`,
		Example: `  stella snapshot save /backups/stella-$(date +%F).tar.gz`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kubeconfig == "" {
				kubeconfig = filepath.Join(dataDir, "admin.kubeconfig")
			}
			cfg, err := kubecfg.Load(kubeconfig)
			if err != nil {
				return err
			}
			manifest, size, err := saveSnapshot(cmd, cfg, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "saved %s: %d members, %d bytes, taken %s\n",
				args[0], len(manifest.Members), size, manifest.CreatedAt.Format("2006-01-02T15:04:05Z"))
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the server, for its admin.kubeconfig ($STELLA_DATA_DIR)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with the admin credential (default: admin.kubeconfig in the data directory)")
	return cmd
}

// saveSnapshot fetches the archive into a hidden file beside file, checks
// it, and then renames it into place.
func saveSnapshot(cmd *cobra.Command, cfg *rest.Config, file string) (*controlplane.SnapshotManifest, int64, error) {
	if _, err := os.Stat(file); err == nil {
		return nil, 0, fmt.Errorf("%s exists: name a new file", file)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+controlplane.SnapshotPath, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("ask %s for a snapshot: %w", cfg.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, 0, fmt.Errorf("%s refused the snapshot: %s: %s", cfg.Host, resp.Status, strings.TrimSpace(string(body)))
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".partial-*")
	if err != nil {
		return nil, 0, err
	}
	defer os.Remove(tmp.Name())
	counted := &countingWriter{w: tmp}
	manifest, err := controlplane.ReadSnapshot(io.TeeReader(resp.Body, counted), nil)
	if err != nil {
		tmp.Close()
		return nil, 0, fmt.Errorf("the snapshot from %s is incomplete, nothing was saved: %w", cfg.Host, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, 0, err
	}
	if err := tmp.Close(); err != nil {
		return nil, 0, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return nil, 0, err
	}
	return manifest, counted.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func snapshotRestoreCommand() *cobra.Command {
	var dataDir, evidenceDir string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "Make a data directory from a backup",
		Long: `Make a data directory from a backup saved with 'stella snapshot save'.
DIR (and --evidence-dir, when given) must be new or empty: a restore never
writes over anything. Every member is checked against the archive's manifest
and etcd's snapshot against its own checksum before anything is put in
place. Then start 'stella serve --data-dir DIR'.

Objects and evidence written after the backup was taken are not in it; the
restored transparency log goes on from the backup's last entry.`,
		Example: `  stella snapshot restore /backups/stella-2026-12-03.tar.gz --data-dir /var/lib/stella`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return fmt.Errorf("--data-dir is required: the new or empty directory to restore into")
			}
			r, err := controlplane.RestoreSnapshot(args[0], dataDir, evidenceDir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "restored %s (taken %s by stella %s, %d members) into %s, evidence in %s; start it with: stella serve --data-dir %s\n",
				args[0], r.Manifest.CreatedAt.Format("2006-01-02T15:04:05Z"), r.Manifest.CreatedWith, len(r.Manifest.Members), r.DataDir, r.EvidenceDir, r.DataDir)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "new or empty directory to restore into (required)")
	cmd.Flags().StringVar(&evidenceDir, "evidence-dir", "", "new or empty directory for the evidence (default: evidence in the data directory)")
	return cmd
}
