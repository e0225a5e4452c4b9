package main

import (
	"strings"
	"testing"

	"github.com/stella-ops/stella/internal/importgraph"
)

// serverLibraries are what only the server runs, which no stellactl
// command needs: the control plane with etcd, the API server's admission
// and authorization code, the reconcilers, the deploying to SSH, Nomad
// and ECS targets with the Nomad API and the AWS SDK, and the evidence
// bucket's S3 client (only the server writes blobs).
var serverLibraries = []string{
	"github.com/stella-ops/stella/internal/controlplane",
	"go.etcd.io/etcd/server",
	"k8s.io/apiserver",
	"k8s.io/kubernetes",
	"github.com/stella-ops/stella/controllers",
	"github.com/stella-ops/stella/internal/agent",
	"github.com/hashicorp/nomad",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/minio/minio-go",
	"github.com/stella-ops/stella/internal/evidence/s3store",
}

// commandLibraries are what stellactl's commands run: the scanner for
// scan, CUE for replay, kubectl's helpers for every command; finding them
// shows the import graph was read at all.
var commandLibraries = []string{
	"github.com/google/osv-scalibr",
	"cuelang.org/go",
	"k8s.io/kubectl",
}

func TestStellactlLinksNoServerLibrary(t *testing.T) {
	const stellactl = "github.com/stella-ops/stella/cmd/stellactl"
	linked, err := importgraph.Chains(stellactl, append(serverLibraries, commandLibraries...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range serverLibraries {
		if chain, ok := linked[lib]; ok {
			t.Errorf("stellactl links %s, which only the server runs, through %s", lib, strings.Join(chain, " -> "))
		}
	}
	for _, lib := range commandLibraries {
		if _, ok := linked[lib]; !ok {
			t.Errorf("stellactl does not link %s, which its commands run", lib)
		}
	}
}
