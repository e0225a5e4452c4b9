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

// The kubectl library's long descriptions and flag texts speak of pods,
// nodes and `kubectl create --save-config`; these say the same for Stella.
const (
	applyLong = `Create or update objects from a file, a directory, or stdin.

The objects are created when they do not exist yet and updated when they do.
By default the server applies them (server-side apply): it records which
manager owns which field, so a field that a reconciler or another user owns is
reported as a conflict instead of being overwritten. --server-side=false
applies on the client with the last-applied annotation, as older tools do.

JSON and YAML are accepted; unknown fields are errors (--validate=strict).`

	deleteLong = `Delete objects by file name, stdin, kind and name, or kind and label selector.

Deleting a Release, Environment or Target does not undo what was deployed:
agents keep running what they run. A Promotion's DeployTasks are deleted with
it by the garbage collector; its EvidencePackets stay, and what they sealed
stays in the transparency log.

--grace-period and --force exist for compatibility; Stella's kinds are deleted
at once. Deleted objects cannot be recovered: --dry-run=server shows what
would be deleted.`

	describeLong = `Show the details of an object or a group of objects: its spec, status,
conditions and recent events. A Promotion is shown with its gates and their
reasons, approvals, targets and events.

Select one object by kind and name, every object of a kind, objects whose name
starts with a prefix, or a label selector. For example:

    $ stellactl describe promotion shop-2.3.1-to-prod
    $ stellactl describe releases shop-

first looks for an exact match of the kind and name; when there is none, it
describes every object of that kind whose name starts with the prefix.`

	cascadeUsage = `"background" (the default), "orphan" or "foreground": how objects owned by the deleted one (a Promotion's DeployTasks, for example) are deleted.`

	pruneUsage = `Delete objects that are no longer in the configuration but were applied from it before (by apply, client-side). Use it with -l or --all.`

	recordUsage = `Record the current stellactl command in the object's annotation (deprecated).`

	editLastAppliedExample = `  # Edit the last-applied configuration of a release in YAML
  stellactl apply edit-last-applied release/shop-1.0.0

  # Edit the last-applied configuration of the objects in a file, in JSON
  stellactl apply edit-last-applied -f release.yaml -o json`

	setLastAppliedLong = `Set the last-applied configuration annotation of objects to the contents of a
file, as if 'stellactl apply -f FILE --server-side=false' had been run,
without changing anything else of the objects.`

	setLastAppliedExample = `  # Set the last-applied configuration of the objects in a file
  stellactl apply set-last-applied -f release.yaml

  # Do it for every file of a directory, creating the annotation where missing
  stellactl apply set-last-applied -f config/ --create-annotation=true`

	viewLastAppliedExample = `  # Show the last-applied configuration of a release in YAML
  stellactl apply view-last-applied release/shop-1.0.0

  # Show it for the objects of a file, in JSON
  stellactl apply view-last-applied -f release.yaml -o json`
)
