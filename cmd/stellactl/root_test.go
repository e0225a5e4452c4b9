package main

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/kubectl/pkg/describe"

	"github.com/stella-ops/stella/apis/v1alpha1"
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

// TestDescriberFor checks that describe reaches the promotion describer by
// the Promotion's GroupKind, whatever its version, and kubectl's own
// describers for everything else.
func TestDescriberFor(t *testing.T) {
	rootCommand(genericiooptions.NewTestIOStreamsDiscard())
	server := "https://127.0.0.1:1"
	getter := genericclioptions.NewConfigFlags(false)
	getter.APIServer = &server
	for _, tc := range []struct {
		gvk  schema.GroupVersionKind
		want string
	}{
		{v1alpha1.GroupVersion.WithKind("Promotion"), "main.promotionDescriber"},
		{schema.GroupVersionKind{Group: v1alpha1.GroupVersion.Group, Version: "v1", Kind: "Promotion"}, "main.promotionDescriber"},
		{v1alpha1.GroupVersion.WithKind("Release"), "*describe.genericDescriber"},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "*describe.DeploymentDescriber"},
	} {
		d, err := describe.DescriberFn(getter, &meta.RESTMapping{GroupVersionKind: tc.gvk})
		if err != nil {
			t.Fatalf("describer for %s: %v", tc.gvk, err)
		}
		if got := fmt.Sprintf("%T", d); got != tc.want {
			t.Errorf("describer for %s = %s, want %s", tc.gvk, got, tc.want)
		}
	}
}
