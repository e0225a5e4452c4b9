package main

import (
	"strings"
	"testing"

	"github.com/stella-ops/stella/internal/importgraph"
)

// serverLibraries are what the server links and a Docker host never runs:
// policy (CUE), the scanner, the evidence bucket (minio), the server-side
// deployers (the AWS SDK for ECS, the Nomad API), the API server and etcd,
// and the reconcilers.
var serverLibraries = []string{
	"cuelang.org/go",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/hashicorp/nomad",
	"github.com/minio/minio-go",
	"github.com/google/osv-scalibr",
	"k8s.io/kubernetes",
	"k8s.io/apiserver",
	"go.etcd.io/etcd/server",
	"github.com/stella-ops/stella/controllers",
	"github.com/stella-ops/stella/internal/agent/serverdeploy",
}

// hostLibraries are what the agent must link to do its work; finding them
// shows the import graph was read at all.
var hostLibraries = []string{
	"github.com/moby/moby/client",
	"github.com/compose-spec/compose-go",
	"github.com/stella-ops/stella/internal/agent",
}

func TestAgentLinksOnlyWhatAHostRuns(t *testing.T) {
	const agent = "github.com/stella-ops/stella/cmd/stella-agent"
	linked, err := importgraph.Chains(agent, append(serverLibraries, hostLibraries...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range serverLibraries {
		if chain, ok := linked[lib]; ok {
			t.Errorf("stella-agent links %s, a server library, through %s: move what the agent needs out of the package that imports it", lib, strings.Join(chain, " -> "))
		}
	}
	for _, lib := range hostLibraries {
		if _, ok := linked[lib]; !ok {
			t.Errorf("stella-agent does not link %s, which it deploys with", lib)
		}
	}
}
