package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/internal/scan"
)

func advisoriesCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "advisories",
		Short: "Import and list the offline advisory snapshots (OSV) the scanner matches against",
		Long: `The scanner matches packages against one advisory snapshot at a time: a set
of OSV documents imported together, stored unchanged under their sha256, and
named by the sha256 of their sorted list. Nothing is fetched from the internet:
download OSV's exports (such as https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip)
where you can, and import them here.

Importing and listing needs the stella-security ClusterRole, bound cluster-wide
(stellactl auth create-user NAME --role security).`,
	}
	cmd.AddCommand(advisoriesImportCommand(f, streams), advisoriesListCommand(f, streams))
	return cmd
}

func advisoriesImportCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var source, signatureFile, keyFile string
	cmd := &cobra.Command{
		Use:   "import PATH",
		Short: "Import OSV advisories as the active snapshot",
		Long: `Import OSV JSON documents from a file (one document or an array), a directory
of .json files, or a zip of them (OSV's per-ecosystem exports), and make them
the active snapshot. An http(s) URL is downloaded first, from the machine
running stellactl: that is the only way anything is fetched, so point it at
your mirror. Every document is checked first; one that is not valid
OSV fails the import, naming its file and field, and the store is unchanged.

Importing the content of the active snapshot again changes nothing. Other
content becomes a new snapshot, and every scan report is matched again from
the package lists the scanner keeps, without reading any image again.

With --signature and --key, the file (a zip or a JSON file) must carry a
detached signature by that key (ECDSA P-256 or Ed25519, raw or base64, as
cosign sign-blob writes it).`,
		Example: `  stellactl advisories import Debian-all.zip --source osv.dev/Debian
  stellactl advisories import ./advisories/ --source internal-feed
  stellactl advisories import https://osv-mirror.internal/Debian/all.zip
  stellactl advisories import feed.zip --signature feed.zip.sig --key feed.pub`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if (signatureFile == "") != (keyFile == "") {
				return fmt.Errorf("--signature and --key go together")
			}
			if source == "" {
				source = path
			}
			if strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://") {
				local, err := download(cmd.Context(), path)
				if err != nil {
					return err
				}
				defer os.Remove(local)
				path = local
			}
			if signatureFile != "" {
				if err := verifyFileSignature(path, signatureFile, keyFile); err != nil {
					return err
				}
			}
			snap, err := scan.ReadSnapshot(path)
			if err != nil {
				return err
			}
			var body bytes.Buffer
			if err := snap.WriteZip(&body); err != nil {
				return err
			}
			data, err := advisoryRequest(cmd.Context(), f, http.MethodPost, scan.PathSnapshots, map[string]string{"source": source}, body.Bytes())
			if err != nil {
				return err
			}
			var result scan.ImportResult
			if err := json.Unmarshal(data, &result); err != nil {
				return fmt.Errorf("the server's answer: %w", err)
			}
			_, err = fmt.Fprintln(streams.Out, result)
			return err
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "where the advisories come from, kept with the snapshot (default: PATH)")
	cmd.Flags().StringVar(&signatureFile, "signature", "", "detached signature of PATH")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM public key the signature must verify with")
	return cmd
}

// download fetches a zip or JSON file of advisories to a temporary file
// with the same suffix.
func download(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", url, res.Status)
	}
	suffix := ".json"
	if strings.HasSuffix(strings.SplitN(url, "?", 2)[0], ".zip") || res.Header.Get("Content-Type") == "application/zip" {
		suffix = ".zip"
	}
	f, err := os.CreateTemp("", "stella-advisories-*"+suffix)
	if err != nil {
		return "", err
	}
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(res.Body, scan.MaxImportSize+1))
	if err == nil && n > scan.MaxImportSize {
		err = fmt.Errorf("larger than %d bytes, the most an import takes", scan.MaxImportSize)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	return f.Name(), nil
}

func verifyFileSignature(path, signatureFile, keyFile string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--signature covers a file: %w", err)
	}
	sig, err := os.ReadFile(signatureFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	return scan.VerifyDetached(data, sig, key, keyFile)
}

func advisoriesListCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	output := newOutputFlags()
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the advisory snapshots, newest import first",
		Long: `List the advisory snapshots, newest import first. With -o json or yaml they
are printed as a List of AdvisorySnapshot (stellactl.stella-ops.org/v1), each
named by its digest.`,
		Example: "  stellactl advisories list\n  stellactl advisories list -o jsonpath='{.items[?(@.active)].metadata.name}'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printer, err := output.objectPrinter()
			if err != nil {
				return err
			}
			data, err := advisoryRequest(cmd.Context(), f, http.MethodGet, scan.PathSnapshots, nil, nil)
			if err != nil {
				return err
			}
			var infos []scan.SnapshotInfo
			if err := json.Unmarshal(data, &infos); err != nil {
				return fmt.Errorf("the server's answer: %w", err)
			}
			return printSnapshots(streams.Out, printer, infos)
		},
	}
	output.addFlags(cmd)
	return cmd
}

// AdvisorySnapshot is one row of `advisories list` as -o json or yaml
// prints it: a snapshot is named by its digest, the sha256 of its sorted
// list of documents.
type AdvisorySnapshot struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	// Source is where the documents were imported from.
	Source string `json:"source"`
	// ImportedAt is when this content was first imported.
	ImportedAt metav1.Time `json:"importedAt"`
	// Advisories counts the documents.
	Advisories int `json:"advisories"`
	// Active says the scanner matches against this snapshot.
	Active bool `json:"active"`
}

// printSnapshots prints the snapshots as a table, or as a List with printer
// when -o asked for one.
func printSnapshots(out io.Writer, printer printers.ResourcePrinter, infos []scan.SnapshotInfo) error {
	if printer != nil {
		snapshots := make([]AdvisorySnapshot, 0, len(infos))
		for _, i := range infos {
			snapshots = append(snapshots, AdvisorySnapshot{
				TypeMeta:   metav1.TypeMeta{APIVersion: stellactlGroupVersion.String(), Kind: "AdvisorySnapshot"},
				ObjectMeta: metav1.ObjectMeta{Name: i.Digest},
				Source:     i.Source, ImportedAt: metav1.NewTime(i.ImportedAt), Advisories: i.Documents, Active: i.Active,
			})
		}
		list, err := printableList(snapshots)
		if err != nil {
			return err
		}
		return printer.PrintObj(list, out)
	}
	var rows [][]any
	for _, i := range infos {
		active := ""
		if i.Active {
			active = "*"
		}
		rows = append(rows, []any{i.Digest, i.Documents, i.ImportedAt.Format(time.RFC3339), i.Source, active})
	}
	return printTable(out, []string{"Snapshot", "Advisories", "Imported", "Source", "Active"}, rows)
}

// advisoryRequest calls the server's advisory store.
func advisoryRequest(ctx context.Context, f cmdutil.Factory, method, path string, params map[string]string, zipBody []byte) ([]byte, error) {
	cs, err := clientset(f)
	if err != nil {
		return nil, err
	}
	values := url.Values{}
	for k, v := range params {
		values.Set(k, v)
	}
	data, status, err := callServer(ctx, cs, method, scan.PathPrefix+path, values, zipBody)
	switch {
	case status == http.StatusForbidden:
		return nil, fmt.Errorf("forbidden: %s %s%s needs the stella-security ClusterRole, bound cluster-wide", method, scan.PathPrefix, path)
	case status == http.StatusNotFound && len(data) == 0:
		return nil, fmt.Errorf("%s%s: not found (does this server run the scanner? stella serve --scan)", scan.PathPrefix, path)
	case err != nil:
		return nil, fmt.Errorf("%s %s%s: %s", method, scan.PathPrefix, path, strings.TrimSpace(string(dataOr(data, err))))
	}
	return data, nil
}

// dataOr is the server's own words when it sent some, else the error.
func dataOr(data []byte, err error) []byte {
	if len(bytes.TrimSpace(data)) > 0 {
		return data
	}
	return []byte(err.Error())
}
