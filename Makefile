# Stella developer entry points. `make help` lists them.
SHELL         := /bin/bash
GO            ?= go
BIN           ?= bin
KUBE_VERSION  := v1.37.2
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
CONTROLLER_GEN = $(GO) tool controller-gen

# The Kubernetes libraries report the version set here (kubectl version needs it).
LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X github.com/stella-ops/stella/internal/version.Version=$(VERSION)
export STELLA_LDFLAGS := $(LDFLAGS)

.PHONY: help build run test test-unit test-e2e generate manifests verify lint bench clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build stella, stellactl and stella-agent into bin/.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

run: build ## Start the control plane on its embedded defaults (data in ~/.local/share/stella).
	$(BIN)/stella serve

test: ## Run every test: unit, integration against the embedded server, end to end.
	$(GO) test -count=1 -timeout 60m ./...
	cd apis && $(GO) test -count=1 ./...
	$(GO) test -run '^$$' -fuzz '^FuzzReadPacket$$' -fuzztime 60s -fuzzminimizetime 5s ./internal/evidence

test-unit: ## Run the tests that need no server.
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test)
	cd apis && $(GO) test -count=1 ./...

test-e2e: ## Run the ginkgo suites under test/ only.
	$(GO) test -count=1 -timeout 60m ./test/... -ginkgo.v

generate: ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object paths=./apis/...

manifests: ## Generate the CRDs from the API types and the controllers' role from their RBAC markers.
	$(CONTROLLER_GEN) crd paths=./apis/... output:crd:artifacts:config=config/crd/bases
	cd config/crd && { echo 'apiVersion: kustomize.config.k8s.io/v1beta1'; echo 'kind: Kustomization'; echo 'resources:'; \
		for f in bases/*.yaml; do echo "- $$f"; done; } > kustomization.yaml
	$(CONTROLLER_GEN) rbac:roleName=stella-controllers,fileName=controllers_role.yaml \
		paths=./controllers/... paths=./internal/agentauth/... paths=./internal/agent/... output:rbac:artifacts:config=config/rbac
	cd config/rbac && { echo 'apiVersion: kustomize.config.k8s.io/v1beta1'; echo 'kind: Kustomization'; echo 'resources:'; \
		for f in *.yaml; do [ $$f = kustomization.yaml ] || echo "- $$f"; done; } > kustomization.yaml

verify: generate manifests ## Regenerate and fail when generated files are stale.
	@gofmt -l $$(git ls-files '*.go') | tee /dev/stderr | (! read)
	$(GO) vet ./...
	cd apis && $(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod or go.sum is not tidy: run go mod tidy and commit"; exit 1; }
	@cd apis && $(GO) mod tidy -diff >/dev/null || { echo "apis/go.mod or apis/go.sum is not tidy: run go mod tidy in apis and commit"; exit 1; }
	@git diff --exit-code -- apis config || { echo "generated files are stale: run make generate manifests and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- apis config)" || { git status --porcelain -- apis config; echo "untracked generated files: commit them"; exit 1; }

lint: ## Run go vet and golangci-lint (installed through the Go module proxy).
	$(GO) vet ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...
	cd apis && $(GO) vet ./... && $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...

bench: build ## Measure create/list throughput, start-up time and memory (see hack/bench).
	hack/bench

clean: ## Remove build outputs.
	rm -rf $(BIN)
