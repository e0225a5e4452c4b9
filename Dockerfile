# Builds stella, stellactl and stella-agent and ships them in an empty image.
#   docker build -t stella .
#   docker run -p 6443:6443 -v stella-data:/var/lib/stella stella
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY apis/go.mod apis/go.sum ./apis/
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
# Static binaries: the final image has no C library.
RUN CGO_ENABLED=0 make build BIN=/out VERSION=${VERSION}
RUN mkdir -p /data && chown 65532:65532 /data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /data /var/lib/stella
ENV STELLA_DATA_DIR=/var/lib/stella HOME=/var/lib/stella
USER 65532:65532
VOLUME /var/lib/stella
EXPOSE 6443
ENTRYPOINT ["/usr/local/bin/stella"]
CMD ["serve", "--listen", "0.0.0.0:6443"]
