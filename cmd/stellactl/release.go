package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/images"
)

const releaseCreateExample = `  # Two components, tags resolved to digests now and never again
  stellactl release create shop-2.3.1 --version 2.3.1 \
    --component api=registry.example.com/shop/api:2.3.1 \
    --component worker=registry.example.com/shop/worker:2.3.1

  # Every service of a compose file that names an image, one component each
  stellactl release create shop-2.3.1 --version 2.3.1 --from-compose compose.yaml`

func releaseCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Create releases",
	}
	cmd.AddCommand(releaseCreateCommand(f, streams))
	return cmd
}

type releaseCreateOptions struct {
	version     string
	components  []string
	composeFile string
	source      v1alpha1.ReleaseSource
}

func releaseCreateCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var o releaseCreateOptions
	output := newOutputFlags()
	cmd := &cobra.Command{
		Use:   "create NAME --version VERSION (--component NAME=IMAGE... | --from-compose FILE)",
		Short: "Create a release, resolving every image tag to its digest once",
		Long: `Create a Release: an immutable set of images pinned by digest.

Each --component NAME=IMAGE names an image by tag or by digest; tags are
resolved to digests in the registry now, once, with the credentials of the
Docker config (~/.docker/config.json). --from-compose takes a component from
every service of a compose file that names an image; --component adds to or
overrides those. Nothing is created unless every image resolves.

Without -o it prints the release's name and a table of its pinned
components; with -o json, yaml or name, only the created Release, as the
server returned it.`,
		Example: releaseCreateExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			printer, err := output.objectPrinter()
			if err != nil {
				return err
			}
			return runReleaseCreate(cmd.Context(), f, streams.Out, printer, args[0], o)
		},
	}
	output.addFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.version, "version", "", "semantic version of the release, such as 2.3.1 (required)")
	fl.StringArrayVar(&o.components, "component", nil, "a component as NAME=IMAGE[:TAG|@DIGEST]; repeat for each")
	fl.StringVar(&o.composeFile, "from-compose", "", "take the components from the services of this compose file")
	fl.StringVar(&o.source.Repository, "source-repository", "", "source repository the images were built from")
	fl.StringVar(&o.source.Commit, "source-commit", "", "revision the images were built from")
	fl.StringVar(&o.source.BuildURL, "build-url", "", "link to the CI run that built the images")
	cmdutil.CheckErr(cmd.MarkFlagRequired("version"))
	return cmd
}

// runReleaseCreate pins the images, creates the release and prints it: with
// printer when -o asked for one, else its name and its components.
func runReleaseCreate(ctx context.Context, f cmdutil.Factory, out io.Writer, printer printers.ResourcePrinter, name string, o releaseCreateOptions) error {
	wanted, err := o.wantedImages(ctx, name)
	if err != nil {
		return err
	}
	rel := &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ReleaseSpec{Version: o.version},
	}
	if o.source != (v1alpha1.ReleaseSource{}) {
		rel.Spec.Source = &o.source
	}
	resolver := images.Resolver{}
	for _, c := range wanted {
		pinned, err := resolver.Pin(ctx, c.image)
		if err != nil {
			return fmt.Errorf("component %s: %w; no release was created", c.name, err)
		}
		rel.Spec.Components = append(rel.Spec.Components, v1alpha1.ReleaseComponent{Name: c.name, Image: v1alpha1.ImageDigestRef(pinned)})
	}

	if printer != nil {
		// The object alone, as kubectl create -o prints it.
		if err := create(ctx, f, io.Discard, rel, "release"); err != nil {
			return err
		}
		return printer.PrintObj(rel, out)
	}
	if err := create(ctx, f, out, rel, "release"); err != nil {
		return err
	}
	return printComponents(out, rel)
}

// printComponents is the table of a release's pinned images.
func printComponents(out io.Writer, rel *v1alpha1.Release) error {
	var rows [][]any
	for _, comp := range rel.Spec.Components {
		rows = append(rows, []any{comp.Name, comp.Image})
	}
	return printTable(out, []string{"Component", "Image"}, rows)
}

type wantedImage struct{ name, image string }

// wantedImages are the components asked for, by name: the compose file's
// services first, then --component, which overrides a service of the same
// name.
func (o releaseCreateOptions) wantedImages(ctx context.Context, release string) ([]wantedImage, error) {
	byName := map[string]string{}
	if o.composeFile != "" {
		fromCompose, err := composeImages(ctx, o.composeFile, release)
		if err != nil {
			return nil, err
		}
		byName = fromCompose
	}
	for _, arg := range o.components {
		compName, image, ok := strings.Cut(arg, "=")
		if !ok || compName == "" || image == "" {
			return nil, fmt.Errorf("--component %q: want NAME=IMAGE, such as api=registry.example.com/shop/api:2.3.1", arg)
		}
		if errs := validation.IsDNS1123Label(compName); len(errs) > 0 {
			return nil, fmt.Errorf("--component %q: the name %s", arg, strings.Join(errs, "; "))
		}
		byName[compName] = image
	}
	if len(byName) == 0 {
		return nil, fmt.Errorf("no components: give --component NAME=IMAGE or --from-compose FILE")
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	wanted := make([]wantedImage, 0, len(names))
	for _, n := range names {
		wanted = append(wanted, wantedImage{name: n, image: byName[n]})
	}
	return wanted, nil
}

// composeImages maps each service of a compose file that names an image to
// that image. A service that only builds is an error: a release needs an
// image in a registry.
func composeImages(ctx context.Context, file, project string) (map[string]string, error) {
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithOsEnv, cli.WithWorkingDirectory(filepath.Dir(file)), cli.WithName(composeProjectName(project)))
	if err != nil {
		return nil, fmt.Errorf("--from-compose %s: %w", file, err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("--from-compose %s: %w", file, err)
	}
	out := map[string]string{}
	for svcName, svc := range p.Services {
		if svc.Image == "" {
			return nil, fmt.Errorf("--from-compose %s: service %s has no image: push it to a registry and name it in the file, or give --component %s=IMAGE", file, svcName, svcName)
		}
		if errs := validation.IsDNS1123Label(svcName); len(errs) > 0 {
			return nil, fmt.Errorf("--from-compose %s: service %s cannot be a component name: %s", file, svcName, strings.Join(errs, "; "))
		}
		out[svcName] = svc.Image
	}
	return out, nil
}

// composeProjectName makes a release name acceptable as a compose project
// name (lower-case letters, digits, dashes and underscores).
func composeProjectName(release string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, strings.ToLower(release))
}
