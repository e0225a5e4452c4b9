package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/yaml"

	"github.com/stella-ops/stella/internal/version"
)

// versions is the -o json|yaml shape; field names follow `kubectl version`
// so scripts written for one read the other.
type versions struct {
	ClientVersion string                    `json:"clientVersion"`
	ServerVersion *apimachineryversion.Info `json:"serverVersion,omitempty"`
}

func versionCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var clientOnly bool
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the stellactl version and the server's version",
		Example: `  # Both versions; the server's needs a reachable server
  stellactl version

  # Only stellactl's, as JSON
  stellactl version --client -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "yaml" {
				return fmt.Errorf("--output must be json or yaml, not %q", output)
			}
			v := versions{ClientVersion: version.String()}
			var serverErr error
			if !clientOnly {
				v.ServerVersion, serverErr = serverVersion(f)
			}
			if err := printVersions(streams.Out, v, output); err != nil {
				return err
			}
			// Like kubectl, the client version is printed even when the
			// server cannot be reached; the error still fails the command.
			return serverErr
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "Print only the client version; needs no server")
	cmd.Flags().StringVarP(&output, "output", "o", "", "One of json or yaml")
	return cmd
}

func serverVersion(f cmdutil.Factory) (*apimachineryversion.Info, error) {
	dc, err := f.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	return dc.ServerVersion()
}

func printVersions(out io.Writer, v versions, output string) error {
	switch output {
	case "json":
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(data))
		return err
	case "yaml":
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = out.Write(data)
		return err
	}
	text := fmt.Sprintf("Client Version: %s\n", v.ClientVersion)
	if v.ServerVersion != nil {
		text += fmt.Sprintf("Server Version: %s\n", v.ServerVersion.GitVersion)
	}
	_, err := io.WriteString(out, text)
	return err
}
