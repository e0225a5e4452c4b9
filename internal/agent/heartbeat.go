package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
	"github.com/stella-ops/stella/internal/version"
)

// heartbeat renews the Lease and reports the Agent's status every
// Heartbeat until the manager stops, then reports the agent stopped.
type heartbeat struct{ a *agent }

func (h heartbeat) Start(ctx context.Context) error {
	a := h.a
	tick := time.NewTicker(a.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return a.reportStopped(stopCtx)
		case <-tick.C:
			// A failed beat is retried on the next tick: the server may be
			// restarting, and the Lease outlives a few missed beats.
			if err := a.beat(ctx); err != nil && ctx.Err() == nil {
				a.log.Error(err, "Heartbeat failed; retrying")
			}
		}
	}
}

// beat renews the Lease and reports the Agent's status.
func (a *agent) beat(ctx context.Context) error {
	now := metav1.NowMicro()
	if err := a.renewLease(ctx, now); err != nil {
		return err
	}
	targets, err := a.servedTargets(ctx)
	if err != nil {
		return err
	}
	return a.patchStatus(ctx, func(obj *v1alpha1.Agent) {
		st := &obj.Status
		st.Version = version.String()
		st.Hostname = a.hostname
		st.LastHeartbeat = &metav1.Time{Time: now.Time}
		st.ServedTargets = targets
		st.Capabilities = slices.Sorted(maps.Keys(a.Drivers))
		message := fmt.Sprintf("stella-agent %s on %s serves %d target(s) and deploys to %v", version.String(), a.hostname, len(targets), st.Capabilities)
		var missing []v1alpha1.TargetType
		for _, c := range obj.Spec.Capabilities {
			if a.Drivers[c] == nil {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			message += fmt.Sprintf("; it cannot deploy to %v, which spec.capabilities names (see the agent's log)", missing)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonHeartbeating, Message: message, ObservedGeneration: obj.Generation,
		})
	})
}

func (a *agent) reportStopped(ctx context.Context) error {
	err := a.patchStatus(ctx, func(obj *v1alpha1.Agent) {
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonStopped,
			Message: fmt.Sprintf("stella-agent on %s was stopped", a.hostname), ObservedGeneration: obj.Generation,
		})
	})
	if err != nil {
		return fmt.Errorf("report the agent stopped: %w", err)
	}
	a.log.Info("Agent stopped")
	return nil
}

func (a *agent) patchStatus(ctx context.Context, mutate func(*v1alpha1.Agent)) error {
	obj := &v1alpha1.Agent{}
	if err := a.reader.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.Name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("the Agent %s/%s does not exist: an admin creates it (see config/samples/agent.yaml)", a.Namespace, a.Name)
		}
		return fmt.Errorf("read Agent %s/%s: %w", a.Namespace, a.Name, err)
	}
	before := obj.DeepCopy()
	mutate(obj)
	if err := a.client.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("report the status of Agent %s/%s: %w", a.Namespace, a.Name, err)
	}
	return nil
}

// servedTargets are the Targets that name this agent, sorted.
func (a *agent) servedTargets(ctx context.Context) ([]string, error) {
	var list v1alpha1.TargetList
	if err := a.reader.List(ctx, &list, client.InNamespace(a.Namespace), client.MatchingFields{v1alpha1.FieldTargetAgent: a.Name}); err != nil {
		return nil, fmt.Errorf("list the Targets of namespace %s: %w", a.Namespace, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, t := range list.Items {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names, nil
}

// renewLease keeps agent-NAME held by this agent; the control plane reads
// its renew time to tell a silent agent from a live one.
func (a *agent) renewLease(ctx context.Context, now metav1.MicroTime) error {
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: a.Namespace, Name: agentid.LeaseName(a.Name)}
	err := a.reader.Get(ctx, key, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(a.Name), LeaseDurationSeconds: ptr.To(a.leaseSeconds()),
				AcquireTime: &now, RenewTime: &now,
			},
		}
		err = a.client.Create(ctx, lease)
		if err == nil || !apierrors.IsAlreadyExists(err) {
			return wrapLease(key, err)
		}
		err = a.reader.Get(ctx, key, lease)
	}
	if err != nil {
		return wrapLease(key, err)
	}
	lease.Spec.HolderIdentity = ptr.To(a.Name)
	lease.Spec.LeaseDurationSeconds = ptr.To(a.leaseSeconds())
	lease.Spec.RenewTime = &now
	return wrapLease(key, a.client.Update(ctx, lease))
}

// leaseSeconds lets the Lease survive two missed heartbeats.
func (a *agent) leaseSeconds() int32 {
	return max(1, int32(3*a.Heartbeat/time.Second))
}

func wrapLease(key client.ObjectKey, err error) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("renew Lease %s: %w (the credential needs the stella-agent role in namespace %s)", key, err, key.Namespace)
	}
	return fmt.Errorf("renew Lease %s: %w", key, err)
}
