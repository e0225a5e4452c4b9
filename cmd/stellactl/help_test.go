package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// kubectlWords are what the kubectl library's texts speak of and a Stella
// server does not serve or stellactl does not have.
var kubectlWords = regexp.MustCompile(`(?i)\bkubectl\b|\bpods?\b|replicationcontroller|\bdeploy/|--save-config|\bnodes?\b|\bnginx\b|\bkube-system\b`)

// links to Kubernetes' documentation may name kubectl in their path.
var links = regexp.MustCompile(`https?://\S+`)

// Every command stellactl inherits from kubectl speaks of Stella kinds and
// of stellactl in its help, examples and flags.
func TestHelpSpeaksOfStella(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		check := func(where, text string) {
			for _, line := range strings.Split(text, "\n") {
				if m := kubectlWords.FindString(links.ReplaceAllString(line, "")); m != "" {
					t.Errorf("%s %s mentions %q: %s", cmd.CommandPath(), where, m, strings.TrimSpace(line))
				}
			}
		}
		check("short", cmd.Short)
		// The top-level help says once that stellactl is built on kubectl.
		if cmd.HasParent() {
			check("long", cmd.Long)
		}
		check("example", cmd.Example)
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) { check("--"+f.Name, f.Usage) })
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(rootCommand(streams))
}

// Every command path that completes names must exist: a renamed command
// would otherwise silently lose its completion.
func TestNameCompletionsNameRealCommands(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	root := rootCommand(streams)
	for path, nc := range stellaNameCompletions {
		cmd, _, err := root.Find(strings.Fields(path))
		if err != nil || cmd.CommandPath() != "stellactl "+path {
			t.Errorf("%q is not a command (found %q, %v)", path, cmd.CommandPath(), err)
			continue
		}
		if cmd.ValidArgsFunction == nil {
			t.Errorf("%s completes no arguments", path)
		}
		for flag := range nc.flags {
			if _, ok := cmd.GetFlagCompletionFunc(flag); !ok {
				t.Errorf("%s --%s has no completion", path, flag)
			}
		}
	}
}
