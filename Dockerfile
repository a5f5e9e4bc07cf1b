# The baremetal cloud-controller-manager image:
#   make image        (docker build --build-arg VERSION=$(VERSION) -t ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:$(VERSION) .)
# VERSION is stamped into the binary (--version, /version, the build info
# metric) and is the image's tag, the one manifests/kustomization.yaml and
# `make release-manifests` deploy: image and binary say the same version.
#
# The build command is the Makefile's `build` (CGO off: a static binary that
# needs no libc on the distroless base). test/deploy runs this RUN line as
# written, with a VERSION of its own, and checks that it is `make build`'s
# command, that the binary is static, starts and prints that version.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused while go.mod and go.sum are unchanged.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X k8s.io/component-base/version.gitVersion=${VERSION}" -o /out/baremetal-cloud-controller-manager ./cmd/baremetal-cloud-controller-manager

# No shell, no package manager; nonroot is UID/GID 65532, the DaemonSet's
# runAsUser.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/baremetal-cloud-controller-manager /baremetal-cloud-controller-manager
USER 65532:65532
ENTRYPOINT ["/baremetal-cloud-controller-manager"]
