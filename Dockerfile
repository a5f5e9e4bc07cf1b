# The baremetal cloud-controller-manager image:
#   docker build -t ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:v0.1.0 .
# The tag is the one manifests/kustomization.yaml deploys.
#
# The build command is the Makefile's `build` (CGO off: a static binary that
# needs no libc on the distroless base). test/deploy runs this RUN line as
# written and checks the binary is static and starts.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused while go.mod and go.sum are unchanged.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/baremetal-cloud-controller-manager ./cmd/baremetal-cloud-controller-manager

# No shell, no package manager; nonroot is UID/GID 65532, the DaemonSet's
# runAsUser.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/baremetal-cloud-controller-manager /baremetal-cloud-controller-manager
USER 65532:65532
ENTRYPOINT ["/baremetal-cloud-controller-manager"]
