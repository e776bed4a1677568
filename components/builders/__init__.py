"""Pure builders: plain dicts in, plain dicts out (Kubernetes manifests, Helm values), no Pulumi."""
