package main

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/kubectl/pkg/cmd/apply"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// Field managers of stellactl apply; the server records them in
// metadata.managedFields, so a conflict names stellactl rather than kubectl.
const (
	fieldManagerServerSide = "stellactl"
	fieldManagerClientSide = "stellactl-client-side-apply"
)

// applyCommand is kubectl apply with server-side apply as the default: Stella
// objects are shared between users, CI and reconcilers, and only server-side
// apply tracks who owns which field and reports conflicts instead of silently
// overwriting. --server-side=false keeps client-side apply available.
// --validate=strict (kubectl's default) is kept, so unknown fields are errors.
func applyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := apply.NewCmdApply(name, f, streams)
	cmd.Long = applyLong
	cmd.Example = applyExample
	for _, sub := range cmd.Commands() {
		switch sub.Name() {
		case "edit-last-applied":
			sub.Example = editLastAppliedExample
		case "set-last-applied":
			sub.Long, sub.Example = setLastAppliedLong, setLastAppliedExample
		case "view-last-applied":
			sub.Example = viewLastAppliedExample
		}
	}

	ssa := cmd.Flags().Lookup("server-side")
	cmdutil.CheckErr(ssa.Value.Set("true"))
	ssa.DefValue = "true"
	ssa.Usage = "If true (the default), apply runs in the server (server-side apply with field manager " +
		fieldManagerServerSide + "). --server-side=false applies client-side with the last-applied annotation."
	fm := cmd.Flags().Lookup("field-manager")
	cmdutil.CheckErr(fm.Value.Set(fieldManagerServerSide))
	fm.DefValue = fieldManagerServerSide
	fm.Usage = "Name of the manager used to track field ownership; " + fieldManagerClientSide + " by default with --server-side=false."

	run := cmd.Run
	cmd.Run = func(c *cobra.Command, args []string) {
		// The library picks kubectl's manager names unless the flag was
		// set, so set it.
		if !c.Flags().Changed("field-manager") {
			manager := fieldManagerServerSide
			if !cmdutil.GetServerSideApplyFlag(c) {
				manager = fieldManagerClientSide
			}
			cmdutil.CheckErr(c.Flags().Set("field-manager", manager))
		}
		run(c, args)
	}
	return cmd
}
