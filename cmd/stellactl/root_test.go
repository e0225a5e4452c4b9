package main

import (
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// TestDefaults pins the defaults that users rely on and that come from
// overriding the kubectl library, which a library upgrade could undo.
func TestDefaults(t *testing.T) {
	root := rootCommand(genericiooptions.NewTestIOStreamsDiscard())
	tests := []struct {
		command []string
		flag    string
		want    string
	}{
		{command: []string{"apply"}, flag: "server-side", want: "true"},
		{command: []string{"apply"}, flag: "validate", want: "strict"},
		{command: []string{"apply"}, flag: "field-manager", want: fieldManagerServerSide},
		{command: []string{"auth", "create-user"}, flag: "ttl", want: "8760h0m0s"},
		{command: []string{"get"}, flag: "kubeconfig", want: ""},
		{command: []string{"get"}, flag: "context", want: ""},
		{command: []string{"get"}, flag: "namespace", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			cmd, _, err := root.Find(tt.command)
			if err != nil {
				t.Fatalf("find %v: %v", tt.command, err)
			}
			f := cmd.Flags().Lookup(tt.flag)
			if f == nil {
				f = cmd.InheritedFlags().Lookup(tt.flag)
			}
			if f == nil {
				t.Fatalf("%v has no --%s", tt.command, tt.flag)
			}
			if f.Value.String() != tt.want {
				t.Errorf("%v --%s = %q, want %q", tt.command, tt.flag, f.Value.String(), tt.want)
			}
		})
	}
}
