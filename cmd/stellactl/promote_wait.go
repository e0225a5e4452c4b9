package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Exit codes of promote --wait, one for each way a promotion can end and
// one for giving up, so that a pipeline can tell them apart. 2 to 10 are
// taken by evidence verify, replay, gates check and scan.
const (
	exitPromotionFailed     = 11
	exitPromotionRejected   = 12
	exitPromotionRolledBack = 13
	exitPromotionCancelled  = 14
	exitPromotionTimeout    = 15
)

// promotionEnds maps each terminal phase to promote --wait's exit code and
// what it means; the command's help is written from it.
var promotionEnds = []struct {
	phase   v1alpha1.PromotionPhase
	code    int
	meaning string
}{
	{v1alpha1.PromotionSucceeded, 0, "the release is deployed to every target of the environment"},
	{v1alpha1.PromotionFailed, exitPromotionFailed, "a deployment failed (and so did its rollback, if one ran)"},
	{v1alpha1.PromotionRejected, exitPromotionRejected, "a gate denied it or an approver rejected it; nothing was deployed"},
	{v1alpha1.PromotionRolledBack, exitPromotionRolledBack, "a deployment failed and the targets were rolled back to what they ran before"},
	{v1alpha1.PromotionCancelled, exitPromotionCancelled, "it was cancelled (stellactl promote cancel)"},
}

// promoteExitCodesHelp documents the exit codes of promote --wait.
func promoteExitCodesHelp() string {
	var b strings.Builder
	b.WriteString("\nExit codes with --wait:\n")
	for _, end := range promotionEnds {
		fmt.Fprintf(&b, "  %2d  %s: %s\n", end.code, end.phase, end.meaning)
	}
	fmt.Fprintf(&b, "  %2d  --timeout passed before the promotion finished; it goes on\n", exitPromotionTimeout)
	b.WriteString("   1  anything else: bad arguments, no access, a missing release or environment\n" +
		"      (nothing is created then), or the promotion was deleted while waiting")
	return b.String()
}

// promotionExit is how promote --wait ends for a promotion that finished
// in phase: nil for success, else an error with the phase's exit code.
func promotionExit(promo *v1alpha1.Promotion) error {
	for _, end := range promotionEnds {
		if end.phase != promo.Status.Phase {
			continue
		}
		if end.code == 0 {
			return nil
		}
		return &exitError{code: end.code, err: fmt.Errorf("promotion %s ended %s: %s", promo.Name, promo.Status.Phase, phaseMessage(promo))}
	}
	return fmt.Errorf("promotion %s ended in phase %q, which this stellactl does not know: update stellactl", promo.Name, promo.Status.Phase)
}

// waitForPromotion follows promo with a watch until it reaches a terminal
// phase, printing each phase it enters, and ends as promotionExit says; or
// with exitPromotionTimeout after timeout. The informer behind
// UntilWithSync lists again when a watch breaks, so a long wait survives
// the server closing watches.
func waitForPromotion(ctx context.Context, c client.WithWatch, promo *v1alpha1.Promotion, timeout time.Duration, out io.Writer) error {
	byName := fields.OneTermEqualSelector("metadata.name", promo.Name)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list := &v1alpha1.PromotionList{}
			err := c.List(ctx, list, &client.ListOptions{Namespace: promo.Namespace, FieldSelector: byName, Raw: &opts})
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, &v1alpha1.PromotionList{}, &client.ListOptions{Namespace: promo.Namespace, FieldSelector: byName, Raw: &opts})
		},
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var shown v1alpha1.PromotionPhase
	last := promo
	_, err := watchtools.UntilWithSync(waitCtx, lw, &v1alpha1.Promotion{}, nil, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			return false, fmt.Errorf("promotion %s was deleted before it finished", promo.Name)
		case watch.Error:
			return false, fmt.Errorf("watch promotion %s: %w", promo.Name, apierrors.FromObject(ev.Object))
		}
		got, ok := ev.Object.(*v1alpha1.Promotion)
		if !ok {
			return false, nil
		}
		last = got
		if got.Status.Phase != "" && got.Status.Phase != shown {
			shown = got.Status.Phase
			if _, err := fmt.Fprintf(out, "promotion.stella-ops.org/%s %s: %s\n", got.Name, got.Status.Phase, phaseMessage(got)); err != nil {
				return false, err
			}
		}
		return got.Status.Phase.IsTerminal(), nil
	})
	switch {
	case err == nil:
		return promotionExit(last)
	case errors.Is(waitCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		phase := last.Status.Phase
		if phase == "" {
			phase = v1alpha1.PromotionPending
		}
		return &exitError{code: exitPromotionTimeout, err: fmt.Errorf(
			"promotion %s is still %s after %s; it goes on: follow it with 'stellactl describe promotion %s' or stop it with 'stellactl promote cancel %s'",
			promo.Name, phase, timeout, promo.Name, promo.Name)}
	default:
		return err
	}
}

// phaseMessage is what the promotion's conditions say about where it is:
// why it is stuck, what it is doing, or how it ended.
func phaseMessage(promo *v1alpha1.Promotion) string {
	for _, t := range []string{v1alpha1.ConditionStalled, v1alpha1.ConditionReconciling, v1alpha1.ConditionReady} {
		if c := meta.FindStatusCondition(promo.Status.Conditions, t); c != nil && c.Message != "" {
			return c.Message
		}
	}
	return "no message yet"
}
