# baremetal-ccm — see README.md.
SHELL := /bin/bash
GO ?= go
BIN := bin/baremetal-cloud-controller-manager
# The same build line as the Dockerfile's RUN (test/deploy checks that
# `make -n build` and the Dockerfile agree): a static, reproducible binary.
GOFLAGS_BUILD := -trimpath
# The version `build` stamps into the binary (--version, /version, the build
# info metric): `git describe`, made to start with vX.Y.Z as component-base needs.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed -E '/^v[0-9]+\.[0-9]+\.[0-9]+/!s/^/v0.0.0-g/' | grep . || echo v0.0.0-dev)
LDFLAGS_VERSION = -X main.version=$(VERSION) -X k8s.io/component-base/version.gitVersion=$(VERSION)
# `make image`: the CCM image as an archive, without Docker (docs/images.md).
IMAGE ?= ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:$(VERSION)
IMAGE_ARCHIVE := bin/baremetal-cloud-controller-manager-image.tar
STATICCHECK_VERSION := v0.8.2
# Generous: the whole suite takes a fraction of this on 2 cores.
TEST_TIMEOUT ?= 60m

.PHONY: all build image release-manifests test unit lint k8s-bins demo demo-down demo-cluster demo-cluster-down conformance conformance-down conformance-ci bench-ipam bench-bgp bench-health bench-provider bench-e2e bench-scale clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags="-s -w $(LDFLAGS_VERSION)" -o $(BIN) ./cmd/baremetal-cloud-controller-manager

# The binary `build` wrote, in an image made without Docker or a registry:
# one archive for ctr, crane and skopeo. It prints how to load or push it.
image: build
	$(GO) run ./hack/image -binary $(BIN) -ref $(IMAGE) -o $(IMAGE_ARCHIVE)

# One rendered install YAML for the release: manifests/ with the image
# $(IMAGE) and the version label $(VERSION), without the example config and
# passwords (docs/install.md).
RELEASE_MANIFEST ?= _output/baremetal-ccm-$(VERSION).yaml
release-manifests:
	@hack/release-manifests.sh $(VERSION) $(IMAGE) $(RELEASE_MANIFEST)

# kube-apiserver, kubeadm and kubectl from the Kubernetes source, cached
# outside the repository ($$BMCCM_CACHE, default ~/.cache/baremetal-ccm).
k8s-bins:
	@hack/build-k8s.sh

# Every test CI runs: unit tests, integration tests against the real
# kube-apiserver, and the FRR/network-namespace tests (as root). containerd
# and etcd v3.7 are the real-node lab's (hack/build-containerd.sh,
# hack/build-etcd.sh). Then Kubernetes' own LoadBalancer e2e tests on the
# real-node cluster (conformance-ci).
test: build
	BMCCM_K8S_BIN=$$(hack/build-k8s.sh) BMCCM_CONTAINERD_BIN=$$(hack/build-containerd.sh) BMCCM_ETCD_BIN=$$(hack/build-etcd.sh) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory conformance-ci

# Tests that need neither root nor the control plane binaries.
unit:
	$(GO) test -race -count=1 ./provider/... ./ipam/... ./bgp/...

lint:
	$(GO) vet ./...
	$(GO) vet -tags bench ./bgp/ ./provider/ ./provider/health/ ./test/bench/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags bench ./...
	@# Product code never imports test code (test/, hack/).
	@out=$$($(GO) list -deps ./cmd/... ./provider/... ./bgp/... ./ipam/... | grep -E '^github.com/baremetal-ccm/baremetal-ccm/(test|hack)(/|$$)'); if [ -n "$$out" ]; then echo "product code imports test code:"; echo "$$out"; exit 1; fi

# As root: the two-rack lab of network namespaces with FRR ToRs, the real
# control plane and two CCM replicas, and a sample Service (docs/lab.md).
demo:
	@hack/demo.sh

demo-down:
	@hack/demo.sh down

# As root: the real thing. A kubeadm cluster of real kubelets, containerd and
# kube-proxy in three racks behind FRR ToRs, the CCM as the DaemonSet of
# manifests/ from an image built here, 6 pods behind a LoadBalancer Service
# and 100 requests (docs/real-cluster.md). Minutes; make demo is the quick one.
demo-cluster:
	@hack/demo-cluster.sh

demo-cluster-down:
	@hack/demo-cluster.sh down

# As root: Kubernetes' own LoadBalancer e2e tests (e2e.test v1.37.2, focus
# `[sig-network] LoadBalancers`) on the real-node cluster, then the cluster
# down; JUnit report in _output/conformance/junit_01.xml (docs/conformance.md).
# Tens of minutes; the first run builds e2e.test (15-35 min).
conformance:
	@hack/conformance.sh

conformance-down:
	@hack/conformance.sh down

# The e2e tests make test runs: all but the three whose length is their own
# design (two rolling updates of 5 DaemonSet rolls with a 60 s shutdown
# delay, about 23 minutes each; the source-range test's negative checks,
# about 14). The full run's result and date: docs/conformance.md.
conformance-ci:
	@CONFORMANCE_OPTIONAL=1 CONFORMANCE_SKIP='rolling update|loadbalancer source ranges' hack/conformance.sh

# Benchmarks whose figures are recorded in docs/ (see docs/benchmarks.md).
bench-ipam:
	$(GO) test -run '^$$' -bench . -benchmem -p 1 ./ipam/

bench-bgp:
	$(GO) test -tags bench -count=1 -p 1 -run '^TestBenchmark(Announce|FRR)$$' -timeout 20m -v ./bgp/

# 1,000 healthz endpoints on 127.1.x.y probed every second for 30 s.
bench-health:
	$(GO) test -tags bench -count=1 -p 1 -run '^TestBenchmarkProbes$$' -timeout 10m -v ./provider/health/

# One cluster change's cost to the announcer, at 1,000 and 10,000 VIPs on 50
# nodes and at the scale benchmark's shape (10,000 VIPs on 1,000 nodes).
bench-provider:
	$(GO) test -tags bench -count=1 -p 1 -run '^$$' -bench '^BenchmarkAnnouncerChange$$' -benchtime 200x ./provider/

# The end-to-end LoadBalancer benchmarks (minutes; run on a quiet machine).
bench-e2e:
	BMCCM_K8S_BIN=$$(hack/build-k8s.sh) $(GO) test -tags bench -p 1 -count=1 -timeout 30m -v -run '^TestBench(CreateBurst|CreateLatency|HealthWithdraw)$$' ./test/bench/

# Issue 18's scale: 1,000 Nodes, 10,000 Services, two routers, two replicas;
# and the backlog of 1,000 Services at start (tens of minutes; quiet machine).
bench-scale:
	BMCCM_K8S_BIN=$$(hack/build-k8s.sh) $(GO) test -tags bench -p 1 -count=1 -timeout 90m -v -run '^TestBench(Scale|Backlog)$$' ./test/bench/

clean:
	rm -rf bin
