package main

import (
	"fmt"
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

func TestPromotionArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		ok   bool
	}{
		{[]string{"promotion", "a", "b"}, "[a b]", true},
		{[]string{"promo", "a"}, "[a]", true},
		{[]string{"promotion/a", "promotions.stella-ops.org/b"}, "[a b]", true},
		{[]string{"promotion"}, "[]", false},
		{[]string{"release", "a"}, "[]", false},
		{[]string{"promotion/a", "release/b"}, "[]", false},
	} {
		names, ok := promotionArgs(tc.args)
		if ok != tc.ok || (ok && fmt.Sprint(names) != tc.want) {
			t.Errorf("promotionArgs(%v) = %v, %v; want %s, %v", tc.args, names, ok, tc.want, tc.ok)
		}
	}
}
