#!/usr/bin/env bash
# Builds the local control plane of one Kubernetes version from the Go module proxy, once:
#   controlplane/build.sh [1.37|1.30]   (default 1.37)
# into target/controlplane/kubernetes-<version>/bin: kube-apiserver, kubectl and etcd of that
# release's own module graph, the harness that starts them (controlplane/harness), and, for
# 1.37, helm. A later run with the same sources and Go returns at once (a stamp records them);
# a changed go.mod relinks from Go's build cache in seconds. Prints the bin directory.
#
# KUBEBUILDER_ASSETS (a folder with kube-apiserver, etcd and kubectl, as envtest lays them out)
# replaces the three servers; the harness and helm are still built here.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
version=${1:-1.37}
module="$here/kubernetes-$version"
if [[ ! -f "$module/go.mod" ]]; then
  echo "controlplane/build.sh: no module for Kubernetes $version (have: $(cd "$here" && ls -d kubernetes-* | sed 's/kubernetes-//' | tr '\n' ' '))" >&2
  exit 2
fi
command -v go >/dev/null || { echo "controlplane/build.sh: go not found on PATH (the control plane is built with Go)" >&2; exit 2; }

out="$here/../target/controlplane/kubernetes-$version"
bin="$out/bin"
mkdir -p "$bin"
out=$(cd "$out" && pwd)
bin="$out/bin"

# The release the module requires, e.g. v1.37.2.
release=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2}' "$module/go.mod")
minor=${release#v1.}
minor=${minor%%.*}

stamp_input() {
  go version
  echo "assets=${KUBEBUILDER_ASSETS:-}"
  cat "$here/build.sh" "$module/go.mod" "$module/go.sum" "$here"/harness/go.mod "$here"/harness/*.go
  if [[ "$version" != 1.37 ]]; then cat "$here/kubernetes-1.37/go.mod" "$here/kubernetes-1.37/go.sum"; fi
}
stamp=$(stamp_input | sha256sum | cut -d' ' -f1)
wanted=(harness kube-apiserver kubectl etcd helm)
fresh=true
for program in "${wanted[@]}"; do [[ -x "$bin/$program" ]] || fresh=false; done
if $fresh && [[ "$(cat "$out/stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

export CGO_ENABLED=0
start=$(date +%s)
log() { echo "controlplane/build.sh: $*" >&2; }

(cd "$here/harness" && go build -trimpath -o "$bin/harness" .)

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  log "kube-apiserver, etcd and kubectl from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  for program in kube-apiserver etcd kubectl; do
    [[ -x "$KUBEBUILDER_ASSETS/$program" ]] || { log "KUBEBUILDER_ASSETS has no $program"; exit 2; }
    rm -f "$bin/$program"
    ln -s "$KUBEBUILDER_ASSETS/$program" "$bin/$program"
  done
else
  log "building kube-apiserver, kubectl and etcd of Kubernetes $release (a first build takes minutes)"
  # Links to KUBEBUILDER_ASSETS from an earlier run are replaced, never written through.
  rm -f "$bin/kube-apiserver" "$bin/kubectl" "$bin/etcd"
  version_flags=""
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $package.gitVersion=$release -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    version_flags+=" -X $package.gitTreeState=clean"
  done
  (cd "$module" && go build -tags providerless -trimpath -ldflags "-s -w$version_flags" \
    -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
  # etcd of the release's own dependency graph: the version that Kubernetes release pins.
  (cd "$module" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
fi

# helm needs the newest client libraries; every version's tests use the one of 1.37.
helm_module="$here/kubernetes-1.37"
helm_release=$(awk '$1 == "helm.sh/helm/v4" {print $2}' "$helm_module/go.mod")
(cd "$helm_module" && go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_release" \
  -o "$bin/helm" helm.sh/helm/v4/cmd/helm)

echo "$stamp" > "$out/stamp"
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  log "harness and helm built, servers linked from KUBEBUILDER_ASSETS, in $(( $(date +%s) - start ))s: $bin"
else
  log "Kubernetes $release built in $(( $(date +%s) - start ))s: $bin"
fi
echo "$bin"
