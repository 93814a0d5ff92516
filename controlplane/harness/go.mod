// The harness that starts and stops the local control plane (etcd, then kube-apiserver) for the
// tests and the demo. Standard library only, so that it builds in seconds on any Go.
module aws-access-operator/controlplane/harness

go 1.22
