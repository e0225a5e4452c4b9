package main

// The kubectl library's own examples talk about pods and deployments, which a
// Stella server does not serve; these replace them.
const (
	getExample = `  # List the releases of the current namespace, with more columns
  stellactl get releases -o wide

  # List every Stella object (all kinds of the "stella" category) in all namespaces
  stellactl get stella -A

  # Print one release as YAML, or only its name
  stellactl get release shop-1.0.0 -o yaml
  stellactl get release shop-1.0.0 -o name`

	describeExample = `  # Show a release with its conditions and recent events
  stellactl describe release shop-1.0.0

  # Describe every promotion in namespace shop
  stellactl describe promotions -n shop`

	applyExample = `  # Create or update the objects of a file, a directory, or stdin
  stellactl apply -f release.yaml
  stellactl apply -f config/
  cat release.yaml | stellactl apply -f -

  # Check what the server would do without persisting anything
  stellactl apply -f release.yaml --dry-run=server

  # Fall back to client-side apply (last-applied annotation)
  stellactl apply -f release.yaml --server-side=false`

	deleteExample = `  # Delete a release by name, or the objects a file describes
  stellactl delete release shop-1.0.0
  stellactl delete -f release.yaml`

	waitExample = `  # Wait until a release is ready (the Release reconciler sets Ready)
  stellactl wait --for=condition=Ready release/shop-1.0.0 --timeout=60s

  # Wait until a promotion reaches a phase
  stellactl wait --for=jsonpath='{.status.phase}'=Succeeded promotion/shop-1.0.0-prod

  # Wait until a release is gone
  stellactl wait --for=delete release/shop-1.0.0`

	explainExample = `  # Document the fields of a kind, or of one field
  stellactl explain release
  stellactl explain release.spec.components`

	apiResourcesExample = `  # List the Stella kinds with their short names
  stellactl api-resources --categories=stella`
)
