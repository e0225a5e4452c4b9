package main

// The deploys mode, `hack/bench deploys`: a server, a stella-agent process
// joined with a join token, a registry on 127.0.0.1 and the local Docker
// engine. It measures, per deployment of a fresh image to one Docker
// Target, the time from the DeployTask's creation to the container being
// healthy (Docker's health_status event), and subtracts what Docker alone
// takes to pull, create and start a container of another fresh image of
// the same size next to the previous one, as a start-first replacement
// does, and become healthy, measured in the same run. Then it rolls
// one release out to 20 Targets on the host at once.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	dockerclient "github.com/moby/moby/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
)

const (
	deploysMode      = "deploys"
	deploysNamespace = "bench-deploys"
	goalOverheadP50  = 100 * time.Millisecond
	deployTimeout    = 2 * time.Minute
	// settleBetweenDeploys lets the agent finish observing the previous
	// deployment before the next is timed.
	settleBetweenDeploys = time.Second
)

type deployOptions struct {
	deploys, rollout int
	stella, agent    string
	stellactl        string
	parallel         int
}

func parseDeployFlags(args []string) deployOptions {
	var o deployOptions
	fs := flag.NewFlagSet("benchmark "+deploysMode, flag.ExitOnError)
	fs.IntVar(&o.deploys, "n", 20, "deployments of a fresh image to one Target, each timed")
	fs.IntVar(&o.rollout, "rollout", 20, "Targets on the host for the rollout")
	fs.IntVar(&o.parallel, "parallel", 4, "the agent's --parallel")
	fs.StringVar(&o.stella, "stella", "bin/stella", "stella binary")
	fs.StringVar(&o.agent, "agent", "bin/stella-agent", "stella-agent binary")
	fs.StringVar(&o.stellactl, "stellactl", "bin/stellactl", "stellactl binary")
	_ = fs.Parse(args)
	if fs.NArg() > 0 || o.deploys < 1 || o.rollout < 1 {
		fs.Usage()
		os.Exit(2)
	}
	return o
}

// deployBench holds a deploys run.
type deployBench struct {
	session
	o       deployOptions
	docker  *dockerclient.Client
	reg     *images.Registry
	program []byte
	run     string
	// healthy notes when each container, by name, was first healthy.
	mu      sync.Mutex
	healthy map[string]time.Time
}

func runDeploys(ctx context.Context, o deployOptions) error {
	work, err := os.MkdirTemp("", "stella-bench-deploys-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &deployBench{session: session{stella: o.stella, work: work, dataDir: filepath.Join(work, "data"), serverArgs: noScan}, o: o,
		run: "bench-" + rand.String(6), healthy: map[string]time.Time{}}
	defer b.stopServer()
	if b.docker, err = dockerclient.New(dockerclient.FromEnv); err != nil {
		return err
	}
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := images.Cleanup(cleanup, b.docker, b.run); err != nil {
			progress("clean up: %v", err)
		}
	}()
	if b.reg, err = images.StartRegistry(); err != nil {
		return err
	}
	defer b.reg.Close()
	if b.program, err = images.Program(ctx); err != nil {
		return err
	}
	if _, err := b.startServer(ctx, "deploys"); err != nil {
		return err
	}
	if err := b.connect(ctx, deploysNamespace); err != nil {
		return err
	}
	go b.noteHealthy(ctx)
	stopAgent, err := b.startAgent(ctx, work)
	if err != nil {
		return err
	}
	// The agent goes before the server, whose shutdown would otherwise wait
	// for the agent's watches.
	defer stopAgent()

	progress("Docker alone: pull, create, start next to the previous container, healthy (%d fresh images)", o.deploys)
	var baseline []time.Duration
	var previous string
	for i := range o.deploys {
		id, d, err := b.dockerAlone(ctx, i, previous)
		if err != nil {
			return fmt.Errorf("docker alone: %w", err)
		}
		baseline, previous = append(baseline, d), id
	}
	if _, err := b.docker.ContainerRemove(ctx, previous, dockerclient.ContainerRemoveOptions{Force: true}); err != nil {
		return err
	}
	progress("through Stella: DeployTask created to container healthy (%d fresh images)", o.deploys)
	if err := b.createEnvironment(ctx, "single", 1); err != nil {
		return err
	}
	var through []time.Duration
	for i := range o.deploys {
		// As Docker alone does, each deployment starts on a quiet host: the
		// previous one's clean-up and observation are over.
		if err := sleep(ctx, settleBetweenDeploys); err != nil {
			return err
		}
		d, err := b.deployOnce(ctx, i)
		if err != nil {
			return fmt.Errorf("deployment %d: %w", i, err)
		}
		through = append(through, d)
	}
	progress("rollout of one release to %d Targets (AllAtOnce, agent --parallel %d)", o.rollout, o.parallel)
	toHealthy, toSucceeded, err := b.rolloutOnce(ctx)
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}

	slices.Sort(baseline)
	slices.Sort(through)
	overhead := percentile(through, 0.5) - percentile(baseline, 0.5)
	fmt.Printf("\nDeploy overhead (%d deployments of fresh images, one container each)\n", o.deploys)
	fmt.Printf("  docker alone (pull+create+start+healthy): p50 %s  p90 %s\n", msOf(percentile(baseline, 0.5)), msOf(percentile(baseline, 0.9)))
	fmt.Printf("  through Stella (task created -> healthy): p50 %s  p90 %s\n", msOf(percentile(through, 0.5)), msOf(percentile(through, 0.9)))
	verdict := "met"
	if overhead > goalOverheadP50 {
		verdict = "MISSED"
	}
	fmt.Printf("  overhead p50: %s (goal <= %s: %s)\n", msOf(overhead), msOf(goalOverheadP50), verdict)
	fmt.Printf("Rollout to %d containers on one host: all healthy %s after the Promotion, Promotion Succeeded seen at %s\n",
		o.rollout, msOf(toHealthy), msOf(toSucceeded))
	return nil
}

func msOf(d time.Duration) string { return ms(float64(d) / float64(time.Millisecond)) }

// image pushes a fresh image of the test app, so that it must be pulled.
// Its health check runs every 250ms, or every second for a fleet of
// containers: each check is an exec, and 20 containers checked four times a
// second would overload a small host and fail their checks.
func (b *deployBench) image(tag string, checkEvery time.Duration) (string, error) {
	img, err := images.App{Version: tag, Run: b.run, CheckEvery: checkEvery}.Image(b.program)
	if err != nil {
		return "", err
	}
	return b.reg.Push("bench/app", tag, img)
}

// noteHealthy records from Docker's events when each container of the run
// turned healthy.
func (b *deployBench) noteHealthy(ctx context.Context) {
	stream := b.docker.Events(ctx, dockerclient.EventsListOptions{Filters: make(dockerclient.Filters).
		Add("type", string(events.ContainerEventType)).Add("label", images.LabelTestRun+"="+b.run)})
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-stream.Err:
			if ctx.Err() == nil {
				progress("Docker event stream broke: %v", err)
			}
			return
		case m := <-stream.Messages:
			if !strings.HasPrefix(string(m.Action), string(events.ActionHealthStatus)) || !strings.HasSuffix(string(m.Action), "healthy") || strings.HasSuffix(string(m.Action), "unhealthy") {
				continue
			}
			name := m.Actor.Attributes["name"]
			b.mu.Lock()
			if _, seen := b.healthy[name]; !seen {
				b.healthy[name] = time.Unix(0, m.TimeNano)
			}
			b.mu.Unlock()
		}
	}
}

func (b *deployBench) healthyAt(ctx context.Context, names ...string) (time.Time, error) {
	deadline := time.Now().Add(deployTimeout)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		var last time.Time
		all := true
		for _, n := range names {
			t, ok := b.healthy[n]
			if !ok {
				all = false
				break
			}
			if t.After(last) {
				last = t
			}
		}
		b.mu.Unlock()
		if all {
			return last, nil
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("containers %v not healthy within %s", names, deployTimeout)
}

// dockerAlone does by hand what a start-first replacement does, with the
// Engine API directly: pull a fresh image, create and start its container
// while the previous one still runs, and wait until the new one is
// healthy; then the previous one goes. Only the first part is timed.
func (b *deployBench) dockerAlone(ctx context.Context, i int, previous string) (id string, took time.Duration, err error) {
	ref, err := b.image(fmt.Sprintf("alone-%d", i), 0)
	if err != nil {
		return "", 0, err
	}
	start := time.Now()
	pull, err := b.docker.ImagePull(ctx, ref, dockerclient.ImagePullOptions{})
	if err != nil {
		return "", 0, err
	}
	if err := pull.Wait(ctx); err != nil {
		return "", 0, err
	}
	name := fmt.Sprintf("%s-alone-%d", b.run, i)
	created, err := b.docker.ContainerCreate(ctx, dockerclient.ContainerCreateOptions{Name: name,
		Config: &container.Config{Image: ref}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		return "", 0, err
	}
	if _, err := b.docker.ContainerStart(ctx, created.ID, dockerclient.ContainerStartOptions{}); err != nil {
		return "", 0, err
	}
	healthy, err := b.healthyAt(ctx, name)
	if err != nil {
		return "", 0, err
	}
	if previous != "" {
		if _, err := b.docker.ContainerRemove(ctx, previous, dockerclient.ContainerRemoveOptions{Force: true}); err != nil {
			return "", 0, err
		}
	}
	return created.ID, healthy.Sub(start), sleep(ctx, settleBetweenDeploys)
}

// startAgent joins an agent with a join token and runs it until the
// returned function is called.
func (b *deployBench) startAgent(ctx context.Context, work string) (stop func(), err error) {
	out, err := exec.CommandContext(ctx, b.o.stellactl, "--kubeconfig", b.kubeconfig(), "agent", "join-token", "bench-host", "-n", deploysNamespace).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("join-token: %w: %s", err, out)
	}
	fields := strings.Fields(string(out))
	args := []string{"run", "--name", "bench-host", "-n", deploysNamespace, "--state-dir", filepath.Join(work, "agent"), "--parallel", fmt.Sprint(b.o.parallel)}
	for i, f := range fields {
		if (f == "--server" || f == "--ca-cert-hash" || f == "--join-token") && i+1 < len(fields) {
			args = append(args, f, fields[i+1])
		}
	}
	logFile, err := os.Create(filepath.Join(work, "agent.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.o.agent, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
	}, nil
}

func (b *deployBench) createEnvironment(ctx context.Context, name string, targets int) error {
	if err := b.client.Create(ctx, &v1alpha1.Environment{
		ObjectMeta: metav1.ObjectMeta{Namespace: deploysNamespace, Name: name},
		Spec: v1alpha1.EnvironmentSpec{Order: 10, TargetSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": name}},
			Strategy: &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyAllAtOnce}},
	}); err != nil {
		return err
	}
	for i := range targets {
		t := fmt.Sprintf("%s-%d", name, i)
		if err := b.client.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: deploysNamespace, Name: t, Labels: map[string]string{"env": name}},
			Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "bench-host", StickerPath: filepath.Join(b.work, "stickers", t, agents.StickerFile),
				Components: []v1alpha1.ComponentTemplate{{Name: "app", ContainerName: b.run + "-" + t, Network: "none"}}},
		}); err != nil {
			return err
		}
	}
	return b.waitTargets(ctx, name, targets)
}

// waitTargets waits until the Environment counts its Targets, so that a
// promotion selects all of them.
func (b *deployBench) waitTargets(ctx context.Context, env string, n int) error {
	for range 500 {
		got := &v1alpha1.Environment{}
		if err := b.client.Get(ctx, client.ObjectKey{Namespace: deploysNamespace, Name: env}, got); err == nil && got.Status.Targets.Total == int32(n) {
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("the Environment %s does not count its %d Targets", env, n)
}

// promote creates a release of a fresh image and promotes it into env.
func (b *deployBench) promote(ctx context.Context, env, tag string, checkEvery time.Duration) (*v1alpha1.Promotion, error) {
	ref, err := b.image(tag, checkEvery)
	if err != nil {
		return nil, err
	}
	rel := &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: deploysNamespace, Name: tag},
		Spec: v1alpha1.ReleaseSpec{Version: "1.0.0", Components: []v1alpha1.ReleaseComponent{{Name: "app", Image: v1alpha1.ImageDigestRef(ref)}}}}
	if err := b.client.Create(ctx, rel); err != nil {
		return nil, err
	}
	promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: deploysNamespace, Name: tag + "-to-" + env},
		Spec: v1alpha1.PromotionSpec{Release: tag, Environment: env, Reason: "benchmark"}}
	return promo, b.client.Create(ctx, promo)
}

// deployOnce times one deployment: from when the DeployTask shows up on a
// watch to when its container is healthy.
func (b *deployBench) deployOnce(ctx context.Context, i int) (time.Duration, error) {
	w, err := b.client.Watch(ctx, &v1alpha1.DeployTaskList{}, client.InNamespace(deploysNamespace))
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	promo, err := b.promote(ctx, "single", fmt.Sprintf("rel-%d", i), 0)
	if err != nil {
		return 0, err
	}
	var created time.Time
	for created.IsZero() {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(deployTimeout):
			return 0, fmt.Errorf("no DeployTask for %s", promo.Name)
		case ev := <-w.ResultChan():
			if task, ok := ev.Object.(*v1alpha1.DeployTask); ok && ev.Type == watch.Added && task.Spec.Promotion == promo.Name {
				created = time.Now()
			}
		}
	}
	// The new container runs under a temporary name until it is healthy.
	healthy, err := b.healthyAt(ctx, b.run+"-single-0-next")
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	delete(b.healthy, b.run+"-single-0-next")
	b.mu.Unlock()
	if err := b.waitPhase(ctx, promo, v1alpha1.PromotionSucceeded); err != nil {
		return 0, err
	}
	return healthy.Sub(created), nil
}

func (b *deployBench) rolloutOnce(ctx context.Context) (toHealthy, toSucceeded time.Duration, err error) {
	if err := b.createEnvironment(ctx, "fleet", b.o.rollout); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	promo, err := b.promote(ctx, "fleet", "rollout", time.Second)
	if err != nil {
		return 0, 0, err
	}
	var names []string
	for i := range b.o.rollout {
		names = append(names, fmt.Sprintf("%s-fleet-%d-next", b.run, i))
	}
	healthy, err := b.healthyAt(ctx, names...)
	if err != nil {
		got := &v1alpha1.Promotion{}
		_ = b.client.Get(ctx, client.ObjectKeyFromObject(promo), got)
		return 0, 0, fmt.Errorf("%w (promotion %s: %s %v)", err, promo.Name, got.Status.Phase, got.Status.Conditions)
	}
	if err := b.waitPhase(ctx, promo, v1alpha1.PromotionSucceeded); err != nil {
		return 0, 0, err
	}
	return healthy.Sub(start), time.Since(start), nil
}

func (b *deployBench) waitPhase(ctx context.Context, promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase) error {
	deadline := time.Now().Add(deployTimeout)
	for time.Now().Before(deadline) {
		got := &v1alpha1.Promotion{}
		if err := b.client.Get(ctx, client.ObjectKeyFromObject(promo), got); err == nil {
			if got.Status.Phase == phase {
				return nil
			}
			if got.Status.Phase.IsTerminal() {
				return fmt.Errorf("promotion %s ended %s", promo.Name, got.Status.Phase)
			}
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("promotion %s not %s within %s", promo.Name, phase, deployTimeout)
}
