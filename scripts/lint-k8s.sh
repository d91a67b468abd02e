#!/usr/bin/env bash
# deploy/k8s validated offline with kubeconform (strict: unknown fields are errors), each file as written and the
# kustomize build of the whole directory (namespace and image rewrites applied), KEDA's objects included.
#
# Tools and schemas are cached outside the clone, keyed by version (REVIEWS_TOOLS_CACHE, default
# ~/.cache/reviews-mtl/tools), and come from the Go module proxy and PyPI only:
#   kubeconform, kustomize     `go install module@version`
#   KEDA's CRD schemas         the github.com/kedacore/keda/v2 module's config/crd/bases, converted to JSON schema by
#                              the openapi2jsonschema.py script shipped in kubeconform's own module
#   built-in kinds             the Kubernetes JSON schemas inside the kubernetes-validate wheel (dev extra), their
#                              references to the shared definitions made absolute file URLs for kubeconform
# Where a tool cannot be fetched, this fails under CI=true and says in one line that it skipped elsewhere.
# Usage: scripts/lint-k8s.sh [DIR]   (default deploy/k8s)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${REVIEWS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reviews-mtl/tools}
PY=${PY:-$ROOT/.venv/bin/python}
KUBECONFORM_VERSION=v0.7.0
KUSTOMIZE_VERSION=v5.7.1  # 5.8 needs Go 1.27
KEDA_VERSION=v2.21.0
KUBERNETES_VERSION=1.30.0

unavailable() {
  if [ "${CI:-}" = true ]; then echo "lint-k8s: FAILED: $*" >&2; exit 1; fi
  echo "lint-k8s skipped: $*" >&2
  exit 0
}

# The functions below set a variable rather than print, so that `unavailable` ends the script, not a subshell.
go_tool() {  # go_tool NAME MODULE/PATH VERSION: sets TOOL to the binary
  TOOL=$TOOLS/$1-$3/$1
  if [ ! -x "$TOOL" ]; then
    command -v go >/dev/null 2>&1 || unavailable "$1 is not cached in $TOOLS and there is no go to build it"
    echo "lint-k8s: building $1 $3 from the Go module proxy" >&2
    GOBIN=$(dirname "$TOOL") nice -n 10 go install "$2@$3" >&2 || unavailable "go install $2@$3 failed"
  fi
}

module_dir() {  # module_dir MODULE VERSION: sets DIR to the unpacked module (read-only, in the module cache)
  command -v go >/dev/null 2>&1 || unavailable "no go to download $1"
  DIR=$(go mod download -json "$1@$2" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') \
    || unavailable "go mod download $1@$2 failed"
}

keda_schemas() {  # sets KEDA_SCHEMAS
  local out=$TOOLS/keda-schemas-$KEDA_VERSION
  if [ ! -f "$out/.complete" ]; then
    local keda kubeconform_src tmp
    module_dir github.com/kedacore/keda/v2 "$KEDA_VERSION"
    keda=$DIR
    module_dir github.com/yannh/kubeconform "$KUBECONFORM_VERSION"
    kubeconform_src=$DIR
    tmp=$(mktemp -d "$TOOLS/keda-schemas.XXXXXX")
    # The script writes {kind}_{version}.json into the working directory.
    (cd "$tmp" && "$PY" "$kubeconform_src/scripts/openapi2jsonschema.py" "$keda"/config/crd/bases/keda.sh_*.yaml >/dev/null)
    touch "$tmp/.complete"
    rm -rf "$out"
    mv "$tmp" "$out"
  fi
  KEDA_SCHEMAS=$out
}

k8s_schemas() {  # sets K8S_SCHEMAS
  local out=$TOOLS/kubernetes-schemas-v$KUBERNETES_VERSION-strict src tmp f
  if [ ! -f "$out/.complete" ]; then
    src=$("$PY" -c 'import kubernetes_validate, pathlib; print(pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema")' 2>/dev/null) \
      || unavailable "kubernetes-validate is not installed (make install brings it)"
    src=$src/v$KUBERNETES_VERSION-local-strict
    [ -d "$src" ] || unavailable "kubernetes-validate has no $KUBERNETES_VERSION schemas at $src"
    tmp=$(mktemp -d "$TOOLS/k8s-schemas.XXXXXX")
    # "/api/_definitions.json#/$defs/X" (resolved by kubernetes-validate itself) -> "file://<out>/_definitions.json#..."
    for f in "$src"/*.json; do
      sed "s|\"/api/_definitions.json#|\"file://$out/_definitions.json#|g" "$f" >"$tmp/$(basename "$f")"
    done
    touch "$tmp/.complete"
    rm -rf "$out"
    mv "$tmp" "$out"
  fi
  K8S_SCHEMAS=$out
}

mkdir -p "$TOOLS"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
kubeconform=$TOOL
go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
kustomize=$TOOL
keda_schemas
k8s_schemas

validate() {
  "$kubeconform" -strict -summary -output text \
    -kubernetes-version "$KUBERNETES_VERSION" \
    -schema-location "$K8S_SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$KEDA_SCHEMAS/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$@"
}

cd "${1:-$ROOT/deploy/k8s}"
manifests=()
for f in *.yaml; do [ "$f" = kustomization.yaml ] || manifests+=("$f"); done
echo "lint-k8s: each manifest (kubeconform $KUBECONFORM_VERSION, Kubernetes $KUBERNETES_VERSION, KEDA $KEDA_VERSION)"
validate "${manifests[@]}"
echo "lint-k8s: kustomize build $(basename "$PWD")"
"$kustomize" build . | validate -
