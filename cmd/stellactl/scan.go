package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/images"
	"github.com/stella-ops/stella/internal/scan"
)

// exitScanFindings ends a scan that found something at or above --fail-on.
const exitScanFindings = 10

func scanCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var output, advisories, cacheDir, failOn string
	var vexFiles, trust []string
	cmd := &cobra.Command{
		Use:   "scan IMAGE",
		Short: "Scan one image now: its packages, matched against advisories, with VEX applied",
		Long: `Scan one image on demand, as the server's scanner does: read it by digest (a
tag is resolved first) with the Docker credentials of this machine, list its
packages layer by layer, and match them against OSV advisories.

The advisories are the server's active snapshot (which needs the
stella-security ClusterRole), or the OSV files at --advisories, without any
server. Layers already read are kept in --cache-dir, so scanning an image on
the same base again reads only its own layers.

Output: a table of findings (table), the report as JSON (json), or the
image's CycloneDX 1.6 SBOM (cyclonedx).

With --fail-on SEVERITY, the scan exits 10 when a finding that VEX does not
suppress is at or above that severity (Low, Medium, High or Critical), so a CI
step can stop on it; the report is printed either way.`,
		Example: `  stellactl scan registry.example.com/shop/api:1.4.2
  stellactl scan registry.example.com/shop/api@sha256:... --advisories Debian-all.zip -o json
  stellactl scan registry.example.com/shop/api:1.4.2 -o cyclonedx > sbom.cdx.json
  stellactl scan registry.example.com/shop/api:1.4.2 --fail-on high`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "table", "json", "cyclonedx":
			default:
				return fmt.Errorf("-o %q: use table, json or cyclonedx", output)
			}
			threshold, err := failOnSeverity(failOn)
			if err != nil {
				return err
			}
			if threshold != "" && output == "cyclonedx" {
				return fmt.Errorf("--fail-on needs findings, and -o cyclonedx prints only the SBOM: use -o table or json")
			}
			ref, err := images.Resolver{}.Pin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			scanner, err := scan.Open(scan.Options{Dir: cacheDir, Parallel: 2, Trust: trust})
			if err != nil {
				return err
			}
			inv, err := scanner.Inventory(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if output == "cyclonedx" {
				sbom, err := scan.SBOM(inv, ref)
				if err != nil {
					return err
				}
				_, err = streams.Out.Write(append(sbom, '\n'))
				return err
			}
			snap, err := snapshotFor(cmd, f, advisories)
			if err != nil {
				return err
			}
			var docs []scan.VEXDocument
			for _, path := range vexFiles {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				doc, err := scan.ParseVEX(data)
				if err != nil {
					return fmt.Errorf("--vex %s: %w", path, err)
				}
				docs = append(docs, scan.VEXDocument{Name: filepath.Base(path), Issuer: doc.Author, Doc: doc})
			}
			report := scan.Evaluate(inv, snap, docs, trust)
			if output == "json" {
				_, err = streams.Out.Write(report.Canonical())
			} else {
				err = printReport(streams.Out, ref, report)
			}
			if err != nil {
				return err
			}
			return findingsExit(report.MaxSeverity, threshold)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json or cyclonedx")
	cmd.Flags().StringVar(&advisories, "advisories", "", "OSV documents to match against: a file, a directory or a zip (default: the server's active snapshot)")
	cmd.Flags().StringSliceVar(&vexFiles, "vex", nil, "OpenVEX documents to apply")
	cmd.Flags().StringSliceVar(&trust, "vex-trust", nil, "VEX issuers, most trusted first")
	cmd.Flags().StringVar(&cacheDir, "cache-dir", defaultScanCache(), "where the layers read are kept")
	cmd.Flags().StringVar(&failOn, "fail-on", "", "exit 10 when a finding is at or above this severity: low, medium, high or critical")
	return cmd
}

// failOnSeverity reads --fail-on; empty means never fail on findings.
func failOnSeverity(flag string) (v1alpha1.Severity, error) {
	if flag == "" {
		return "", nil
	}
	for _, s := range []v1alpha1.Severity{v1alpha1.SeverityLow, v1alpha1.SeverityMedium, v1alpha1.SeverityHigh, v1alpha1.SeverityCritical} {
		if strings.EqualFold(flag, string(s)) {
			return s, nil
		}
	}
	return "", fmt.Errorf("--fail-on %q: use low, medium, high or critical", flag)
}

// findingsExit fails a scan whose worst finding reaches the threshold.
func findingsExit(worst, threshold v1alpha1.Severity) error {
	if threshold == "" || worst.Rank() < threshold.Rank() {
		return nil
	}
	return &exitError{code: exitScanFindings, err: fmt.Errorf("a %s finding is at or above --fail-on %s", worst, threshold)}
}

func defaultScanCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "stella", "scan")
	}
	return filepath.Join(os.TempDir(), "stella-scan")
}

// snapshotFor reads the advisories at path, or downloads the server's
// active snapshot.
func snapshotFor(cmd *cobra.Command, f cmdutil.Factory, path string) (*scan.Snapshot, error) {
	if path != "" {
		return scan.ReadSnapshot(path)
	}
	data, err := advisoryRequest(cmd.Context(), f, http.MethodGet, scan.PathSnapshots+"/active", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%w (or match against local OSV files with --advisories)", err)
	}
	spool, err := os.CreateTemp("", "stella-advisories-*.zip")
	if err != nil {
		return nil, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if _, err := spool.Write(data); err != nil {
		return nil, err
	}
	snap, err := scan.ReadSnapshot(spool.Name())
	if err != nil {
		return nil, fmt.Errorf("the server's active snapshot: %w", err)
	}
	return snap, nil
}

func printReport(out io.Writer, ref string, r *scan.Report) error {
	s := r.Summary
	fmt.Fprintf(out, "Image:     %s\nPackages:  %d\nAdvisories: snapshot %s\nFindings:  %d critical, %d high, %d medium, %d low, %d unknown, %d suppressed by VEX (highest: %s)\n",
		ref, r.Packages, r.AdvisorySnapshot, s.Critical, s.High, s.Medium, s.Low, s.Unknown, s.Suppressed, r.MaxSeverity)
	for _, p := range r.Problems {
		fmt.Fprintf(out, "Problem:   %s\n", p)
	}
	if len(r.Findings) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	var rows [][]any
	for _, f := range r.Findings {
		vex := ""
		if f.VEX != nil {
			vex = strings.TrimSuffix(fmt.Sprintf("%s %s", f.VEX.Status, f.VEX.Justification), " ")
		}
		advisory := f.Advisory
		if len(f.Aliases) > 0 {
			advisory += " (" + strings.Join(f.Aliases, ", ") + ")"
		}
		rows = append(rows, []any{string(f.Severity), advisory, f.Package, f.Version, f.FixedIn, vex})
	}
	return printTable(out, []string{"Severity", "Advisory", "Package", "Version", "Fixed in", "Vex"}, rows)
}
