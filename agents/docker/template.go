package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// DefaultRunningFor is how long a container without a health check must
// keep running before it counts as healthy.
const DefaultRunningFor = 10 * time.Second

// spec is everything a component's container is created from.
type spec struct {
	name       string
	config     *container.Config
	host       *container.HostConfig
	networking *network.NetworkingConfig
	// runningFor is set when the template has no health check command: the
	// image's own check is used when it has one, else the container must
	// run this long.
	runningFor time.Duration
}

// templateOf is the target's template for a component; a component the
// target does not mention runs with defaults.
func templateOf(target *v1alpha1.Target, component string) v1alpha1.ComponentTemplate {
	for _, t := range target.Spec.Components {
		if t.Name == component {
			return t
		}
	}
	return v1alpha1.ComponentTemplate{Name: component}
}

// containerName is the component's container on the target.
func containerName(target *v1alpha1.Target, t v1alpha1.ComponentTemplate) string {
	if t.ContainerName != "" {
		return t.ContainerName
	}
	return target.Name + "-" + t.Name
}

// specOf turns a component template into a container spec, refusing what
// Docker would misread. Errors name the template field to fix.
func specOf(target *v1alpha1.Target, t v1alpha1.ComponentTemplate, c v1alpha1.ComponentDigest, d agents.Desired) (spec, error) {
	field := fmt.Sprintf("Target %s/%s spec.components[%s]", target.Namespace, target.Name, t.Name)
	s := spec{
		name: containerName(target, t),
		config: &container.Config{
			Image:  string(c.Image),
			Labels: agents.Labels(target, d, c),
		},
		host: &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}},
	}
	if len(t.EnvFrom) > 0 {
		// Refused rather than ignored: a container started without the
		// variables its Secrets hold would run misconfigured.
		return spec{}, fmt.Errorf("%s.envFrom: stella-agent cannot read Secrets yet; set the variables under env instead", field)
	}
	for _, e := range t.Env {
		s.config.Env = append(s.config.Env, e.Name+"="+e.Value)
	}
	if t.RestartPolicy != "" {
		s.host.RestartPolicy.Name = container.RestartPolicyMode(t.RestartPolicy)
	}
	if len(t.Ports) > 0 {
		s.config.ExposedPorts = network.PortSet{}
		s.host.PortBindings = network.PortMap{}
	}
	for i, p := range t.Ports {
		port, binding, err := parsePort(p)
		if err != nil {
			return spec{}, fmt.Errorf("%s.ports[%d] %q: %w", field, i, p, err)
		}
		s.config.ExposedPorts[port] = struct{}{}
		s.host.PortBindings[port] = append(s.host.PortBindings[port], binding)
	}
	for i, v := range t.Volumes {
		if err := checkVolume(v); err != nil {
			return spec{}, fmt.Errorf("%s.volumes[%d] %q: %w", field, i, v, err)
		}
		s.host.Binds = append(s.host.Binds, v)
	}
	if t.Network != "" {
		s.host.NetworkMode = container.NetworkMode(t.Network)
		if custom := !isBuiltinNetwork(t.Network); custom {
			s.networking = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				t.Network: {Aliases: []string{t.Name}},
			}}
		}
	}
	s.runningFor = DefaultRunningFor
	if h := t.HealthCheck; h != nil {
		if h.RunningFor != nil {
			s.runningFor = h.RunningFor.Duration
		}
		if len(h.Command) > 0 {
			s.runningFor = 0
			s.config.Healthcheck = &container.HealthConfig{
				Test: append([]string{"CMD"}, h.Command...), Interval: durationOr(h.Interval, 10*time.Second),
				Timeout: durationOr(h.Timeout, 5*time.Second), Retries: int(max(h.Retries, 3)),
			}
			if h.StartPeriod != nil {
				s.config.Healthcheck.StartPeriod = h.StartPeriod.Duration
			}
		}
	}
	sum, err := configDigest(s)
	if err != nil {
		return spec{}, err
	}
	s.config.Labels[agents.LabelConfig] = sum
	return s, nil
}

// configDigest identifies what a container is created from apart from the
// image and the labels naming the release and promotion: a rollback to the
// same digests with the same template changes nothing.
func configDigest(s spec) (string, error) {
	data, err := json.Marshal(struct {
		Name       string
		Env        []string
		Ports      network.PortMap
		Binds      []string
		Network    container.NetworkMode
		Restart    container.RestartPolicy
		Health     *container.HealthConfig
		RunningFor time.Duration
	}{s.name, s.config.Env, s.host.PortBindings, s.host.Binds, s.host.NetworkMode, s.host.RestartPolicy, s.config.Healthcheck, s.runningFor})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16]), nil
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// parsePort reads [ip:]hostPort:containerPort[/proto].
func parsePort(s string) (network.Port, network.PortBinding, error) {
	parts := strings.Split(s, ":")
	var ip, hostPort, containerPort string
	switch len(parts) {
	case 2:
		hostPort, containerPort = parts[0], parts[1]
	case 3:
		ip, hostPort, containerPort = parts[0], parts[1], parts[2]
	default:
		return network.Port{}, network.PortBinding{}, fmt.Errorf("want [ip:]hostPort:containerPort[/proto], such as 127.0.0.1:8080:80")
	}
	if n, err := strconv.ParseUint(hostPort, 10, 16); err != nil || n == 0 {
		return network.Port{}, network.PortBinding{}, fmt.Errorf("the host port %q must be a number from 1 to 65535", hostPort)
	}
	port, err := network.ParsePort(containerPort)
	if err != nil {
		return network.Port{}, network.PortBinding{}, err
	}
	binding := network.PortBinding{HostPort: hostPort}
	if ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return network.Port{}, network.PortBinding{}, fmt.Errorf("host address: %w", err)
		}
		binding.HostIP = addr
	}
	return port, binding, nil
}

// checkVolume accepts source:target[:ro|rw] with an absolute target.
func checkVolume(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return fmt.Errorf("want source:target[:ro], such as /srv/data:/data:ro or a named volume data:/data")
	}
	if !path.IsAbs(parts[1]) {
		return fmt.Errorf("the target %q must be an absolute path in the container", parts[1])
	}
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return fmt.Errorf("the mode %q must be ro or rw", parts[2])
	}
	return nil
}

func isBuiltinNetwork(n string) bool {
	return n == "none" || n == "host" || n == "bridge" || n == "default" || strings.HasPrefix(n, "container:")
}
