// Package v1alpha1 holds the Stella API: releases, the environments they are
// promoted through, the gates that guard promotions, the targets and agents
// that run them, and the evidence, scan reports and VEX statements that back
// every decision.
//
// +kubebuilder:object:generate=true
// +groupName=stella-ops.org
package v1alpha1
