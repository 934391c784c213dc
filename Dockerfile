# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Dependencies first so this layer is cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/hookd ./cmd/hookd

# ---- runtime ----------------------------------------------------------------
# Static distroless image: CA certificates + tzdata, no shell, runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hookd /hookd
USER nonroot:nonroot
# 8080: HTTP API, 9464: Prometheus metrics
EXPOSE 8080 9464
ENTRYPOINT ["/hookd"]
CMD ["serve"]
