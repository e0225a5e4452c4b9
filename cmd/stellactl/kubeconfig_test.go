package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestResolveKubeconfig(t *testing.T) {
	home := filepath.FromSlash("/home/u")
	defaultAdmin := filepath.Join(home, ".local", "share", "stella", "admin.kubeconfig")
	envAdmin := filepath.Join(filepath.FromSlash("/srv/stella"), "admin.kubeconfig")
	kubeConfig := filepath.Join(home, ".kube", "config")
	existing := func(paths ...string) func(string) bool {
		return func(p string) bool {
			for _, e := range paths {
				if p == e {
					return true
				}
			}
			return false
		}
	}

	tests := []struct {
		name     string
		in       kubeconfigInputs
		wantPath string // "" = client-go's rules ($KUBECONFIG, ~/.kube/config)
		wantFrom string // "" = no kubeconfig anywhere
	}{
		{
			name:     "flag wins over everything",
			in:       kubeconfigInputs{Flag: "/tmp/k", EnvKubeconfig: "/tmp/env", StellaDataDir: "/srv/stella", Home: home, Exists: existing(envAdmin, defaultAdmin)},
			wantPath: "/tmp/k", wantFrom: "--kubeconfig",
		},
		{
			name:     "KUBECONFIG wins over the Stella data dir",
			in:       kubeconfigInputs{EnvKubeconfig: "/tmp/a:/tmp/b", StellaDataDir: "/srv/stella", Home: home, Exists: existing(envAdmin, defaultAdmin)},
			wantPath: "", wantFrom: "$KUBECONFIG",
		},
		{
			name:     "STELLA_DATA_DIR admin kubeconfig",
			in:       kubeconfigInputs{StellaDataDir: "/srv/stella", Home: home, Exists: existing(envAdmin, defaultAdmin)},
			wantPath: envAdmin, wantFrom: "the Stella data directory",
		},
		{
			name:     "STELLA_DATA_DIR without admin kubeconfig does not fall back to the default data dir",
			in:       kubeconfigInputs{StellaDataDir: "/srv/stella", Home: home, Exists: existing(defaultAdmin, kubeConfig)},
			wantPath: "", wantFrom: "~/.kube/config",
		},
		{
			name:     "default data dir admin kubeconfig wins over ~/.kube/config",
			in:       kubeconfigInputs{Home: home, Exists: existing(defaultAdmin, kubeConfig)},
			wantPath: defaultAdmin, wantFrom: "the Stella data directory",
		},
		{
			name:     "nothing local: ~/.kube/config",
			in:       kubeconfigInputs{Home: home, Exists: existing(kubeConfig)},
			wantPath: "", wantFrom: "~/.kube/config",
		},
		{
			name:     "no kubeconfig anywhere",
			in:       kubeconfigInputs{StellaDataDir: "/srv/stella", Home: home, Exists: existing(defaultAdmin)},
			wantPath: "", wantFrom: "",
		},
		{
			name:     "no home directory and no STELLA_DATA_DIR",
			in:       kubeconfigInputs{Exists: func(string) bool { return true }},
			wantPath: "", wantFrom: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, from := resolveKubeconfig(tt.in)
			if path != tt.wantPath || from != tt.wantFrom {
				t.Errorf("resolveKubeconfig() = (%q, %q), want (%q, %q)", path, from, tt.wantPath, tt.wantFrom)
			}
		})
	}
}

func TestUserKubeconfigRender(t *testing.T) {
	base := userKubeconfig{
		ClusterName: "stella",
		Server:      "https://127.0.0.1:6443",
		CAData:      []byte("CA"),
		User:        "alice",
		CertPEM:     []byte("CERT"),
		KeyPEM:      []byte("KEY"),
		Namespace:   "shop",
	}
	tests := []struct {
		name        string
		mutate      func(*userKubeconfig)
		wantErr     bool
		wantContext string
		wantCluster string
		wantNS      string
	}{
		{name: "namespaced user", wantContext: "alice@stella", wantCluster: "stella", wantNS: "shop"},
		{name: "cluster-wide user gets the default namespace", mutate: func(u *userKubeconfig) { u.Namespace = "" }, wantContext: "alice@stella", wantCluster: "stella", wantNS: "default"},
		{name: "unnamed cluster", mutate: func(u *userKubeconfig) { u.ClusterName = "" }, wantContext: "alice@stella", wantCluster: "stella", wantNS: "shop"},
		{name: "caller's cluster name is kept", mutate: func(u *userKubeconfig) { u.ClusterName = "prod" }, wantContext: "alice@prod", wantCluster: "prod", wantNS: "shop"},
		{name: "no server", mutate: func(u *userKubeconfig) { u.Server = "" }, wantErr: true},
		{name: "no user", mutate: func(u *userKubeconfig) { u.User = "" }, wantErr: true},
		{name: "no key", mutate: func(u *userKubeconfig) { u.KeyPEM = nil }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := base
			if tt.mutate != nil {
				tt.mutate(&u)
			}
			out, err := u.render()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("render() succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("render() = %v", err)
			}
			cfg, err := clientcmd.Load(out)
			if err != nil {
				t.Fatalf("the rendered kubeconfig does not load: %v\n%s", err, out)
			}
			if cfg.CurrentContext != tt.wantContext {
				t.Errorf("current-context = %q, want %q", cfg.CurrentContext, tt.wantContext)
			}
			kctx := cfg.Contexts[tt.wantContext]
			if kctx == nil {
				t.Fatalf("context %q missing", tt.wantContext)
			}
			if kctx.Cluster != tt.wantCluster || kctx.AuthInfo != u.User || kctx.Namespace != tt.wantNS {
				t.Errorf("context = %+v, want cluster %q, user %q, namespace %q", kctx, tt.wantCluster, u.User, tt.wantNS)
			}
			cluster := cfg.Clusters[tt.wantCluster]
			if cluster == nil || cluster.Server != u.Server || !bytes.Equal(cluster.CertificateAuthorityData, u.CAData) {
				t.Errorf("cluster = %+v, want server %q with the CA embedded", cluster, u.Server)
			}
			user := cfg.AuthInfos[u.User]
			if user == nil || !bytes.Equal(user.ClientCertificateData, u.CertPEM) || !bytes.Equal(user.ClientKeyData, u.KeyPEM) {
				t.Errorf("user = %+v, want the certificate and key embedded", user)
			}
		})
	}
}

// client-go skips a missing $KUBECONFIG file and falls back to
// localhost:8080; stellactl names the missing file instead.
func TestMissingKubeconfigIsNamed(t *testing.T) {
	exists := func(p string) bool { return p == "/etc/real" }
	for _, tc := range []struct {
		name    string
		in      kubeconfigInputs
		wantErr string
	}{
		{"the only file is missing", kubeconfigInputs{EnvKubeconfig: "/nonexistent", Exists: exists}, "/nonexistent"},
		{"all files are missing", kubeconfigInputs{EnvKubeconfig: "/a" + string(filepath.ListSeparator) + "/b", Exists: exists}, "/a, /b"},
		{"one of them exists", kubeconfigInputs{EnvKubeconfig: "/a" + string(filepath.ListSeparator) + "/etc/real", Exists: exists}, ""},
		{"--kubeconfig wins", kubeconfigInputs{Flag: "/etc/real", EnvKubeconfig: "/nonexistent", Exists: exists}, ""},
		{"no KUBECONFIG", kubeconfigInputs{Exists: exists}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := missingEnvKubeconfigError(tc.in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestARefusedConnectionSuggestsStellaServe(t *testing.T) {
	got := withServeHint("The connection to the server 127.0.0.1:6443" + kubectlRefused)
	if !strings.Contains(got, "127.0.0.1:6443") || !strings.Contains(got, `"stella serve"`) || strings.Contains(got, "\n") {
		t.Fatalf("one line naming the server and stella serve, got %q", got)
	}
	if other := "error: something else"; withServeHint(other) != other {
		t.Fatalf("other messages are left as they are, got %q", withServeHint(other))
	}
}
