// Package ecsfake is a model of the AWS ECS API for tests, served on
// 127.0.0.1: no ECS emulator is reachable here, and AWS is not. It speaks the
// ECS JSON 1.1 protocol strictly, so that the AWS SDK's own serializers,
// signing, retries and waiters run against it: every request must be signed
// for the fake's region and service with a known access key, every body is
// decoded into the SDK's own input type with unknown fields refused, and
// answers are the SDK's own output types in ECS's wire names.
//
// It keeps task definitions and services, and models a service's
// deployments: a new deployment completes after two looks at the service
// (DescribeServices), or, when its images are marked as crashing, fails;
// with the deployment circuit breaker's rollback on, the service then goes
// back to the task definition it ran before. This is a model of ECS's
// documented behaviour, not ECS.
package ecsfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

const (
	targetPrefix = "AmazonEC2ContainerServiceV20141113."
	account      = "000000000000"
	// stepsToSettle is how many looks at a service a deployment takes.
	stepsToSettle = 2
)

// Server is the fake ECS.
type Server struct {
	*httptest.Server
	Region string
	// keys are the access keys it accepts, and whether each may write.
	keys map[string]bool

	mu        sync.Mutex
	families  map[string][]types.TaskDefinition
	clusters  map[string]map[string]*service
	crashing  map[string]bool
	throttled map[string]int
	calls     map[string]int
	nextID    int
}

type service struct {
	types.Service
	// steps counts the looks at the primary deployment.
	steps int
}

// Start serves a fake ECS in region until Close.
func Start(region string) *Server {
	s := &Server{Region: region, keys: map[string]bool{}, families: map[string][]types.TaskDefinition{},
		clusters: map[string]map[string]*service{}, crashing: map[string]bool{}, throttled: map[string]int{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AllowKey accepts an access key; writer says whether it may change
// anything, or only read.
func (s *Server) AllowKey(accessKeyID string, writer bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[accessKeyID] = writer
}

// Crash marks an image whose tasks exit as soon as they start.
func (s *Server) Crash(image string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashing[image] = true
}

// Throttle makes the next n calls of op fail with ThrottlingException, which
// the SDK retries.
func (s *Server) Throttle(op string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttled[op] += n
}

// Calls is how many requests of op arrived, retries included.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// CreateService creates an ACTIVE service running a registered task
// definition with desired tasks, settled.
func (s *Server) CreateService(cluster, name, taskDefinitionArn string, desired int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clusters[cluster] == nil {
		s.clusters[cluster] = map[string]*service{}
	}
	now := time.Now()
	svc := &service{Service: types.Service{
		ServiceName: aws.String(name), ServiceArn: aws.String(fmt.Sprintf("arn:aws:ecs:%s:%s:service/%s/%s", s.Region, account, cluster, name)),
		ClusterArn: aws.String(s.clusterArn(cluster)), Status: aws.String("ACTIVE"), DesiredCount: desired, RunningCount: desired,
		TaskDefinition: aws.String(taskDefinitionArn), LaunchType: types.LaunchTypeFargate, CreatedAt: &now,
		DeploymentConfiguration: &types.DeploymentConfiguration{MaximumPercent: aws.Int32(200), MinimumHealthyPercent: aws.Int32(100)},
	}}
	svc.Deployments = []types.Deployment{s.deployment(taskDefinitionArn, desired, types.DeploymentRolloutStateCompleted)}
	svc.Deployments[0].RunningCount = desired
	s.clusters[cluster][name] = svc
}

// Client is an SDK client of the fake, signing with accessKeyID.
func (s *Server) Client(accessKeyID string) *ecs.Client {
	return ecs.New(ecs.Options{Region: s.Region, BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider(accessKeyID, "secret", "")})
}

func (s *Server) clusterArn(cluster string) string {
	return fmt.Sprintf("arn:aws:ecs:%s:%s:cluster/%s", s.Region, account, cluster)
}

// apiError is an error ECS answers with.
type apiError struct {
	code, message string
	status        int
}

func clientErr(code, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...), status: http.StatusBadRequest}
}

var authorization = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/(\d{8})/([a-z0-9-]+)/([a-z]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", strconv.FormatInt(time.Now().UnixNano(), 36))
	out, apiErr := s.handle(r)
	if apiErr != nil {
		w.WriteHeader(apiErr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": apiErr.code, "message": apiErr.message})
		return
	}
	_ = json.NewEncoder(w).Encode(wire(reflect.ValueOf(out)))
}

func (s *Server) handle(r *http.Request) (any, *apiError) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, clientErr("UnknownOperationException", "%s %s is not an ECS operation", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		return nil, clientErr("SerializationException", "content type %q is not application/x-amz-json-1.1", ct)
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if !ok {
		return nil, clientErr("UnknownOperationException", "X-Amz-Target %q is not an ECS operation", r.Header.Get("X-Amz-Target"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	writer, apiErr := s.authenticate(r)
	if apiErr != nil {
		return nil, apiErr
	}
	if s.throttled[op] > 0 {
		s.throttled[op]--
		return nil, clientErr("ThrottlingException", "Rate exceeded")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, clientErr("SerializationException", "%v", err)
	}
	switch op {
	case "DescribeServices":
		return decode(body, s.describeServices)
	case "DescribeTaskDefinition":
		return decode(body, s.describeTaskDefinition)
	case "ListTaskDefinitions":
		return decode(body, s.listTaskDefinitions)
	case "RegisterTaskDefinition", "UpdateService":
		if !writer {
			return nil, &apiError{code: "AccessDeniedException", status: http.StatusBadRequest,
				message: fmt.Sprintf("User: arn:aws:iam::%s:user/read-only is not authorized to perform: ecs:%s", account, op)}
		}
		if op == "UpdateService" {
			return decode(body, s.updateService)
		}
		return decode(body, s.registerTaskDefinition)
	}
	return nil, clientErr("UnknownOperationException", "the fake ECS does not model %s", op)
}

// authenticate checks the SigV4 authorization of a request: a known key,
// scoped to the fake's region and to ecs, signing the headers that say
// what the request is.
func (s *Server) authenticate(r *http.Request) (writer bool, _ *apiError) {
	m := authorization.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return false, &apiError{code: "MissingAuthenticationTokenException", message: "Missing Authentication Token", status: http.StatusBadRequest}
	}
	key, day, region, svc, signed := m[1], m[2], m[3], m[4], strings.Split(m[5], ";")
	writer, known := s.keys[key]
	switch {
	case !known:
		return false, clientErr("UnrecognizedClientException", "The security token included in the request is invalid.")
	case region != s.Region || svc != "ecs":
		return false, clientErr("InvalidSignatureException", "Credential should be scoped to a valid region and service ecs, not %s/%s", region, svc)
	case !strings.HasPrefix(r.Header.Get("X-Amz-Date"), day):
		return false, clientErr("InvalidSignatureException", "the credential date %s is not the X-Amz-Date", day)
	}
	for _, h := range []string{"host", "x-amz-date", "x-amz-target", "content-type"} {
		if !slices.Contains(signed, h) {
			return false, clientErr("InvalidSignatureException", "header %s is not signed", h)
		}
	}
	return writer, nil
}

// decode reads a request body into the SDK's input type of the operation,
// refusing fields the type does not have, and calls handle with it.
func decode[In any](body []byte, handle func(*In) (any, *apiError)) (any, *apiError) {
	in := new(In)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(in); err != nil {
		return nil, clientErr("SerializationException", "%v", err)
	}
	return handle(in)
}

func (s *Server) cluster(name *string) (map[string]*service, *apiError) {
	n := aws.ToString(name)
	if n == "" {
		n = "default"
	}
	n = n[strings.LastIndexByte(n, '/')+1:]
	c, ok := s.clusters[n]
	if !ok {
		return nil, clientErr("ClusterNotFoundException", "Cluster not found.")
	}
	return c, nil
}

func (s *Server) describeServices(in *ecs.DescribeServicesInput) (any, *apiError) {
	c, apiErr := s.cluster(in.Cluster)
	if apiErr != nil {
		return nil, apiErr
	}
	out := &ecs.DescribeServicesOutput{}
	for _, name := range in.Services {
		svc, ok := c[name[strings.LastIndexByte(name, '/')+1:]]
		if !ok {
			out.Failures = append(out.Failures, types.Failure{Arn: aws.String(name), Reason: aws.String("MISSING")})
			continue
		}
		s.advance(svc)
		out.Services = append(out.Services, svc.Service)
	}
	return out, nil
}

// advance moves a service's deployment one step on.
func (s *Server) advance(svc *service) {
	primary := &svc.Deployments[0]
	if primary.RolloutState != types.DeploymentRolloutStateInProgress {
		return
	}
	svc.steps++
	breaker := svc.DeploymentConfiguration != nil && svc.DeploymentConfiguration.DeploymentCircuitBreaker != nil &&
		svc.DeploymentConfiguration.DeploymentCircuitBreaker.Enable
	if s.crashes(aws.ToString(primary.TaskDefinition)) {
		primary.FailedTasks += svc.DesiredCount
		if !breaker || svc.steps < stepsToSettle {
			return // without the breaker ECS keeps trying
		}
		s.event(svc, fmt.Sprintf("(service %s) (deployment %s) deployment failed: tasks failed to start.", aws.ToString(svc.ServiceName), aws.ToString(primary.Id)))
		if !svc.DeploymentConfiguration.DeploymentCircuitBreaker.Rollback || len(svc.Deployments) < 2 {
			primary.RolloutState, primary.RolloutStateReason = types.DeploymentRolloutStateFailed, aws.String("ECS deployment circuit breaker: tasks failed to start.")
			return
		}
		back := svc.Deployments[1]
		s.event(svc, fmt.Sprintf("(service %s) rolling back to deployment %s.", aws.ToString(svc.ServiceName), aws.ToString(back.Id)))
		back.Status, back.RolloutState, back.RunningCount = aws.String("PRIMARY"), types.DeploymentRolloutStateCompleted, svc.DesiredCount
		svc.Deployments = []types.Deployment{back}
		svc.TaskDefinition, svc.RunningCount, svc.steps = back.TaskDefinition, svc.DesiredCount, 0
		return
	}
	if svc.steps < stepsToSettle {
		primary.RunningCount = svc.DesiredCount / 2
		return
	}
	primary.RolloutState, primary.RunningCount = types.DeploymentRolloutStateCompleted, svc.DesiredCount
	primary.RolloutStateReason = aws.String("ECS deployment " + aws.ToString(primary.Id) + " completed.")
	svc.Deployments = svc.Deployments[:1]
	svc.RunningCount, svc.steps = svc.DesiredCount, 0
	s.event(svc, fmt.Sprintf("(service %s) has reached a steady state.", aws.ToString(svc.ServiceName)))
}

func (s *Server) crashes(arn string) bool {
	td := s.lookup(arn)
	return td != nil && slices.ContainsFunc(td.ContainerDefinitions, func(c types.ContainerDefinition) bool { return s.crashing[aws.ToString(c.Image)] })
}

func (s *Server) event(svc *service, message string) {
	s.nextID++
	now := time.Now()
	svc.Events = append([]types.ServiceEvent{{Id: aws.String(strconv.Itoa(s.nextID)), CreatedAt: &now, Message: aws.String(message)}}, svc.Events...)
}

func (s *Server) deployment(arn string, desired int32, state types.DeploymentRolloutState) types.Deployment {
	s.nextID++
	now := time.Now()
	return types.Deployment{Id: aws.String(fmt.Sprintf("ecs-svc/%019d", s.nextID)), Status: aws.String("PRIMARY"), TaskDefinition: aws.String(arn),
		DesiredCount: desired, RolloutState: state, CreatedAt: &now, UpdatedAt: &now, LaunchType: types.LaunchTypeFargate}
}

func (s *Server) updateService(in *ecs.UpdateServiceInput) (any, *apiError) {
	c, apiErr := s.cluster(in.Cluster)
	if apiErr != nil {
		return nil, apiErr
	}
	name := aws.ToString(in.Service)
	svc, ok := c[name[strings.LastIndexByte(name, '/')+1:]]
	if !ok {
		return nil, clientErr("ServiceNotFoundException", "Service not found.")
	}
	if in.DeploymentConfiguration != nil {
		svc.DeploymentConfiguration = in.DeploymentConfiguration
	}
	if in.DesiredCount != nil {
		svc.DesiredCount = *in.DesiredCount
	}
	if in.TaskDefinition != nil {
		td := s.lookup(*in.TaskDefinition)
		if td == nil {
			return nil, clientErr("ClientException", "TaskDefinition not found.")
		}
		arn := aws.ToString(td.TaskDefinitionArn)
		if arn != aws.ToString(svc.Deployments[0].TaskDefinition) {
			svc.Deployments[0].Status = aws.String("ACTIVE")
			svc.Deployments = append([]types.Deployment{s.deployment(arn, svc.DesiredCount, types.DeploymentRolloutStateInProgress)}, svc.Deployments...)
			svc.TaskDefinition, svc.steps = aws.String(arn), 0
		}
	}
	return &ecs.UpdateServiceOutput{Service: &svc.Service}, nil
}

func (s *Server) registerTaskDefinition(in *ecs.RegisterTaskDefinitionInput) (any, *apiError) {
	family := aws.ToString(in.Family)
	if family == "" || len(in.ContainerDefinitions) == 0 {
		return nil, clientErr("ClientException", "family and containerDefinitions are required")
	}
	for _, c := range in.ContainerDefinitions {
		if aws.ToString(c.Name) == "" || aws.ToString(c.Image) == "" {
			return nil, clientErr("ClientException", "Container.name and Container.image should not be null or empty.")
		}
	}
	revision := int32(len(s.families[family]) + 1)
	now := time.Now()
	td := types.TaskDefinition{
		TaskDefinitionArn: aws.String(fmt.Sprintf("arn:aws:ecs:%s:%s:task-definition/%s:%d", s.Region, account, family, revision)),
		Family:            in.Family, Revision: revision, Status: types.TaskDefinitionStatusActive, RegisteredAt: &now,
		ContainerDefinitions: in.ContainerDefinitions, Cpu: in.Cpu, Memory: in.Memory, NetworkMode: in.NetworkMode,
		RequiresCompatibilities: in.RequiresCompatibilities, ExecutionRoleArn: in.ExecutionRoleArn, TaskRoleArn: in.TaskRoleArn,
		Volumes: in.Volumes, PlacementConstraints: in.PlacementConstraints, RuntimePlatform: in.RuntimePlatform,
		EphemeralStorage: in.EphemeralStorage, IpcMode: in.IpcMode, PidMode: in.PidMode, ProxyConfiguration: in.ProxyConfiguration,
	}
	s.families[family] = append(s.families[family], td)
	return &ecs.RegisterTaskDefinitionOutput{TaskDefinition: &td, Tags: in.Tags}, nil
}

// lookup finds a task definition by ARN, family:revision or family (its
// latest revision).
func (s *Server) lookup(ref string) *types.TaskDefinition {
	ref = ref[strings.LastIndexByte(ref, '/')+1:]
	family, rev, hasRev := strings.Cut(ref, ":")
	revs := s.families[family]
	if len(revs) == 0 {
		return nil
	}
	if !hasRev {
		return &revs[len(revs)-1]
	}
	n, err := strconv.Atoi(rev)
	if err != nil || n < 1 || n > len(revs) {
		return nil
	}
	return &revs[n-1]
}

func (s *Server) describeTaskDefinition(in *ecs.DescribeTaskDefinitionInput) (any, *apiError) {
	td := s.lookup(aws.ToString(in.TaskDefinition))
	if td == nil {
		return nil, clientErr("ClientException", "Unable to describe task definition.")
	}
	return &ecs.DescribeTaskDefinitionOutput{TaskDefinition: td}, nil
}

func (s *Server) listTaskDefinitions(in *ecs.ListTaskDefinitionsInput) (any, *apiError) {
	var arns []string
	for family, revs := range s.families {
		if !strings.HasPrefix(family, aws.ToString(in.FamilyPrefix)) {
			continue
		}
		for _, td := range revs {
			arns = append(arns, aws.ToString(td.TaskDefinitionArn))
		}
	}
	revisionOf := func(arn string) int { n, _ := strconv.Atoi(arn[strings.LastIndexByte(arn, ':')+1:]); return n }
	slices.SortFunc(arns, func(a, b string) int { return revisionOf(a) - revisionOf(b) })
	if in.Sort == types.SortOrderDesc {
		slices.Reverse(arns)
	}
	if in.MaxResults != nil && len(arns) > int(*in.MaxResults) {
		arns = arns[:*in.MaxResults]
	}
	return &ecs.ListTaskDefinitionsOutput{TaskDefinitionArns: arns}, nil
}

// wire is v as ECS writes it: structs as objects with lowerCamel member
// names, empty members left out, times as epoch seconds, maps keeping their
// keys.
func wire(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return wire(v.Elem())
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			return float64(t.UnixMilli()) / 1000
		}
		out := map[string]any{}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() || v.Field(i).IsZero() {
				continue
			}
			name := []rune(f.Name)
			name[0] = unicode.ToLower(name[0])
			out[string(name)] = wire(v.Field(i))
		}
		return out
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = wire(v.Index(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[k.String()] = wire(v.MapIndex(k))
		}
		return out
	default:
		return v.Interface()
	}
}
