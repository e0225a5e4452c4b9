package agentauth

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// syncTimeout bounds the first list of the Agents.
const syncTimeout = time.Minute

// Agents says whether an agent identity still stands for an Agent that
// exists, is not revoked, and was last joined by the enrolment the
// identity's certificate carries. It answers from a watch of the Agents, so a
// deletion or a revocation counts as soon as the watch delivers it
// (typically within milliseconds), and a lookup costs no request.
type Agents struct {
	lister atomic.Pointer[cache.GenericLister]
}

// NewAgents returns Agents that refuse every agent until Start has loaded
// them.
func NewAgents() *Agents { return &Agents{} }

// Start watches the Agents through cfg until ctx ends, and returns once
// they are loaded.
func (w *Agents) Start(ctx context.Context, cfg *rest.Config) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("watch Agents: %w", err)
	}
	gvr := v1alpha1.GroupVersion.WithResource("agents")
	inf := dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, "", 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil)
	// Only whether an Agent exists, is revoked, and its enrolment matter
	// here.
	if err := inf.Informer().SetTransform(keepStanding); err != nil {
		return fmt.Errorf("watch Agents: %w", err)
	}
	go inf.Informer().RunWithContext(ctx)
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("watch Agents: not loaded within %s", syncTimeout)
	}
	w.use(inf.Lister())
	return nil
}

func (w *Agents) use(l cache.GenericLister) { w.lister.Store(&l) }

// keepStanding strips an Agent down to its name, enrolment and
// spec.revoked.
func keepStanding(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a tombstone of a deletion
	}
	revoked, _, _ := unstructured.NestedBool(u.Object, "spec", "revoked")
	kept := &unstructured.Unstructured{}
	kept.SetAPIVersion(u.GetAPIVersion())
	kept.SetKind(u.GetKind())
	kept.SetNamespace(u.GetNamespace())
	kept.SetName(u.GetName())
	kept.SetUID(u.GetUID())
	kept.SetResourceVersion(u.GetResourceVersion())
	if id, ok := u.GetAnnotations()[v1alpha1.AnnotationAgentEnrolment]; ok {
		kept.SetAnnotations(map[string]string{v1alpha1.AnnotationAgentEnrolment: id})
	}
	if revoked {
		if err := unstructured.SetNestedField(kept.Object, true, "spec", "revoked"); err != nil {
			return nil, err
		}
	}
	return kept, nil
}

// refusal says why the identity of agent, with a certificate of enrolment,
// is no longer accepted, or is empty while it is.
func (w *Agents) refusal(agent Agent, enrolment string) string {
	l := w.lister.Load()
	if l == nil {
		return "the server has not loaded the Agents yet: retry in a moment"
	}
	obj, err := (*l).ByNamespace(agent.Namespace).Get(agent.Name)
	if err != nil {
		return fmt.Sprintf("Agent %s/%s does not exist: the certificate of a deleted Agent is refused; create the Agent and join its host with a new token (stellactl agent join-token)", agent.Namespace, agent.Name)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Sprintf("Agent %s/%s: unexpected cached object %T", agent.Namespace, agent.Name, obj)
	}
	if revoked, _, _ := unstructured.NestedBool(u.Object, "spec", "revoked"); revoked {
		return revokedRefusal(agent)
	}
	return enrolmentRefusal(agent, u.GetAnnotations()[v1alpha1.AnnotationAgentEnrolment], enrolment)
}

func revokedRefusal(agent Agent) string {
	return fmt.Sprintf("Agent %s/%s is revoked: delete it and join its host again with a new token (stellactl agent join-token)", agent.Namespace, agent.Name)
}

// enrolmentRefusal says why a certificate of enrolment is refused for an
// Agent last joined by current; empty when they are the same.
func enrolmentRefusal(agent Agent, current, enrolment string) string {
	if enrolment == current {
		return ""
	}
	return fmt.Sprintf("the certificate is of an earlier join of Agent %s/%s (enrolment %q, the Agent's is %q): join its host again with a new token (stellactl agent join-token)",
		agent.Namespace, agent.Name, enrolment, current)
}
