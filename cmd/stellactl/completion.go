package main

import (
	"strings"

	"github.com/spf13/cobra"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	utilcomp "k8s.io/kubectl/pkg/util/completion"
)

// nameCompletion says which kind each positional argument and flag of a
// Stella command names, so that the shell completes them from the server.
type nameCompletion struct {
	args  []string          // the resource of the first, second, ... argument
	flags map[string]string // flag name to resource
}

// stellaNameCompletions is keyed by command path without "stellactl ".
var stellaNameCompletions = map[string]nameCompletion{
	"promote":         {args: []string{"releases"}, flags: map[string]string{"to": "environments"}},
	"promote cancel":  {args: []string{"promotions"}},
	"approve":         {args: []string{"promotions"}},
	"reject":          {args: []string{"promotions"}},
	"evidence export": {args: []string{"promotions"}},
	"gates check":     {args: []string{"releases"}, flags: map[string]string{"env": "environments"}},
	"rollback":        {args: []string{"environments"}, flags: map[string]string{"to": "releases"}},
}

// completeStellaNames registers the completions of stellaNameCompletions,
// and of "replay promotion NAME", on the commands of root.
func completeStellaNames(root *cobra.Command, f cmdutil.Factory) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		path := strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
		if nc, ok := stellaNameCompletions[path]; ok {
			cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) >= len(nc.args) {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return utilcomp.CompGetResource(f, nc.args[len(args)], toComplete), cobra.ShellCompDirectiveNoFileComp
			}
			for flag, resource := range nc.flags {
				cmdutil.CheckErr(cmd.RegisterFlagCompletionFunc(flag, func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
					return utilcomp.CompGetResource(f, resource, toComplete), cobra.ShellCompDirectiveNoFileComp
				}))
			}
		}
		if path == "replay" {
			// "replay FILE" completes files; "replay promotion NAME" names.
			cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				switch {
				case len(args) == 0 && strings.HasPrefix("promotion", toComplete) && toComplete != "":
					return []string{"promotion"}, cobra.ShellCompDirectiveNoFileComp
				case len(args) == 1 && args[0] == "promotion":
					return utilcomp.CompGetResource(f, "promotions", toComplete), cobra.ShellCompDirectiveNoFileComp
				case len(args) == 0:
					return nil, cobra.ShellCompDirectiveDefault
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
