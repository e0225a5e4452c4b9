package v1alpha1

// Names of the objects a Stella installation keeps for itself.
const (
	// SystemNamespace holds Stella's own objects, such as the controllers'
	// ServiceAccount and leader Lease.
	SystemNamespace = "stella-system"
	// LeaderElectionID names the Lease in SystemNamespace whose holder runs
	// the reconcilers.
	LeaderElectionID = "stella-controllers"
)
