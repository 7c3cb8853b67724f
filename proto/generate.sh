#!/bin/sh
# Regenerates lib/models/*_pb.ts from proto/*.proto, offline: Debian's protoc
# plus protoc-gen-es run by Deno from the npm registry cache.
# Needs: protoc (apt install protobuf-compiler).
set -eu
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install -y protobuf-compiler" >&2; exit 1; }
plugin=$(mktemp)
trap 'rm -f "$plugin"' EXIT
printf '#!/bin/sh\nexec deno run -A --node-modules-dir=none npm:@bufbuild/protoc-gen-es@2.17.0 "$@"\n' > "$plugin"
chmod +x "$plugin"
protoc -I proto --plugin=protoc-gen-es="$plugin" --es_out=lib/models \
  --es_opt=target=ts,import_extension=ts proto/torus.proto proto/rpc.proto
deno fmt lib/models >/dev/null 2>&1 || true
echo "generated lib/models/torus_pb.ts and lib/models/rpc_pb.ts"
