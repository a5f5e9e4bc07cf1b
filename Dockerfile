# The baremetal cloud-controller-manager image, for those with Docker:
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:v0.1.0 .
# The tag is the one manifests/kustomization.yaml deploys. Without Docker,
# `make image` builds the same image as an archive (docs/images.md).
#
# The build command is the Makefile's `build` (CGO off: a static binary that
# needs no libc on the distroless base; the version stamped as `make build`
# stamps it). test/deploy runs this RUN line as written, checks the binary is
# static, starts and reports VERSION, and that `make -n build` prints the
# same line.

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
