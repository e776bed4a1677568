"""Pure builders: plain dicts in, plain dicts out (IAM documents, manifests, Helm values). No Pulumi."""
