package policy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Budgets of a policy in the default sandbox. They are constants, not
// settings, because a decision records their messages: a replay must meet
// the same budgets to reproduce it.
const (
	// DefaultTimeout bounds the wall-clock time of one compilation, or one
	// compilation and evaluation. Policies take milliseconds.
	DefaultTimeout = 2 * time.Second
	// DefaultMemory bounds how much address space a worker may add to what
	// it maps at start, for one policy at a time.
	DefaultMemory = 512 << 20
	// DefaultWorkers is how many policies run at once.
	DefaultWorkers = 2
)

// startTimeout bounds a worker's start, which runs the binary's package
// initialisation and counts against no policy's budget.
const startTimeout = 30 * time.Second

// maxExceeded bounds how many over-budget policies the sandbox remembers.
const maxExceeded = 4096

// Budget names the budget a policy exceeded.
type Budget string

const (
	// BudgetTime: the policy did not finish within its time budget.
	BudgetTime Budget = "time"
	// BudgetMemory: the policy needed more memory than its budget.
	BudgetMemory Budget = "memory"
)

// BudgetError says that a policy exceeded a budget. Its message depends
// only on the budget, so it is as deterministic as a decision.
type BudgetError struct {
	Budget Budget
	// Limit is the budget, "2s" or "512 MiB".
	Limit string
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("policy exceeded its %s budget of %s and was stopped; it fails closed until its source changes: simplify it (fewer nested comprehensions, smaller generated values)", e.Budget, e.Limit)
}

// CompileError is a policy that does not compile; its message is Compile's.
type CompileError struct{ msg string }

func (e *CompileError) Error() string { return e.msg }

// EvaluateError is a policy broken for one input (see Program.Evaluate), or
// an input too large to hand it; either way the policy's gate fails.
type EvaluateError struct{ msg string }

func (e *EvaluateError) Error() string { return e.msg }

// IsPolicyFault reports whether err is the policy's own doing (a
// *CompileError, *BudgetError or *EvaluateError), the same every time, rather
// than the sandbox failing, which is worth a retry.
func IsPolicyFault(err error) bool {
	_, compile := errors.AsType[*CompileError](err)
	_, budget := errors.AsType[*BudgetError](err)
	_, evaluate := errors.AsType[*EvaluateError](err)
	return compile || budget || evaluate
}

// SandboxOptions configure a Sandbox. Zero fields take the defaults.
type SandboxOptions struct {
	// Workers is how many worker processes run policies at once.
	Workers int
	// Timeout is each request's time budget.
	Timeout time.Duration
	// Memory is each worker's memory budget in bytes.
	Memory int64
	// Command starts a worker: a process that runs this package with the
	// STELLA_POLICY_WORKER variable set (the sandbox sets it). The default
	// re-executes the running binary.
	Command func() *exec.Cmd
}

// Sandbox compiles and evaluates policies in worker processes, so that a
// policy that loops or allocates without bound costs its own budget and
// nothing else: a worker over its time budget is killed, one over its
// memory budget dies, and either is replaced by a fresh one. Each tenant
// (namespace) has at most one policy running at a time, so that with two
// or more workers one tenant never holds them all. A policy that exceeded
// a budget is remembered by digest and refused at once until its source
// changes. Safe for concurrent use.
type Sandbox struct {
	o       SandboxOptions
	workers chan *worker // idle slots; a nil slot starts a worker on use
	tenants keyedLock

	mu       sync.Mutex
	exceeded map[string]*BudgetError // by source digest
}

var (
	defaultSandbox     *Sandbox
	defaultSandboxOnce sync.Once
)

// Default is the process's sandbox with the default budgets, whose workers
// are this binary run again.
func Default() *Sandbox {
	defaultSandboxOnce.Do(func() { defaultSandbox = NewSandbox(SandboxOptions{}) })
	return defaultSandbox
}

// NewSandbox returns a sandbox; workers start on first use.
func NewSandbox(o SandboxOptions) *Sandbox {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Memory <= 0 {
		o.Memory = DefaultMemory
	}
	if o.Command == nil {
		o.Command = Reexec
	}
	s := &Sandbox{o: o, workers: make(chan *worker, o.Workers), exceeded: map[string]*BudgetError{}}
	for range o.Workers {
		s.workers <- nil
	}
	return s
}

// Reexec is the default worker command: the current binary run again,
// which package initialisation turns into a worker.
func Reexec() *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return exec.Command(self)
}

// Check compiles source in a worker. The error is a *CompileError, a
// *BudgetError, or the sandbox failing.
func (s *Sandbox) Check(ctx context.Context, tenant, source string) error {
	_, err := s.run(ctx, tenant, request{Op: opCompile, Source: source})
	return err
}

// Evaluate compiles source and decides in on it, in a worker. Errors are
// as Check's, plus an *EvaluateError; see IsPolicyFault.
func (s *Sandbox) Evaluate(ctx context.Context, tenant, source string, in Input) (Decision, error) {
	data, err := in.encode()
	if err != nil {
		return Decision{}, &EvaluateError{err.Error()}
	}
	resp, err := s.run(ctx, tenant, request{Op: opEvaluate, Source: source, Input: data})
	if err != nil {
		return Decision{}, err
	}
	if resp.EvaluateError != "" {
		return Decision{}, &EvaluateError{resp.EvaluateError}
	}
	if resp.Decision == nil {
		return Decision{}, errors.New("policy worker answered without a decision")
	}
	return *resp.Decision, nil
}

// Close stops the idle workers; a busy one stops when its request ends.
func (s *Sandbox) Close() {
	for range s.o.Workers {
		if w := <-s.workers; w != nil {
			w.stop()
		}
	}
}

func (s *Sandbox) run(ctx context.Context, tenant string, req request) (response, error) {
	if len(req.Source) > MaxSourceBytes {
		return response{}, &CompileError{fmt.Sprintf("policy source is %d bytes, over the limit of %d", len(req.Source), MaxSourceBytes)}
	}
	digest := Digest(req.Source)
	if err := s.exceededBy(digest); err != nil {
		return response{}, err
	}
	unlock, err := s.tenants.lock(ctx, tenant)
	if err != nil {
		return response{}, err
	}
	defer unlock()
	var w *worker
	select {
	case w = <-s.workers:
	case <-ctx.Done():
		return response{}, fmt.Errorf("wait for a policy worker: %w", ctx.Err())
	}
	defer func() { s.workers <- w }()
	if w == nil {
		if w, err = startWorker(s.o.Command(), s.o.Memory); err != nil {
			return response{}, err
		}
	}
	resp, err := w.call(ctx, req, s.o.Timeout)
	if err != nil {
		w = nil // call stopped it; the slot starts a fresh one
		var budget *BudgetError
		if errors.As(err, &budget) {
			budget.Limit = s.limit(budget.Budget)
			s.remember(digest, budget)
		}
		return response{}, err
	}
	if resp.CompileError != "" {
		return response{}, &CompileError{resp.CompileError}
	}
	return resp, nil
}

func (s *Sandbox) limit(b Budget) string {
	if b == BudgetMemory {
		return fmt.Sprintf("%d MiB", s.o.Memory>>20)
	}
	return s.o.Timeout.String()
}

func (s *Sandbox) exceededBy(digest string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err, ok := s.exceeded[digest]; ok {
		return err
	}
	return nil
}

func (s *Sandbox) remember(digest string, err *BudgetError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.exceeded) >= maxExceeded {
		clear(s.exceeded)
	}
	s.exceeded[digest] = err
}

// worker is one worker process and its pipes.
type worker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *headBuffer
	exited chan struct{} // closed once the process has been waited for
}

// startWorker starts cmd as a worker with the memory budget and waits for
// it to say it is ready.
func startWorker(cmd *exec.Cmd, memory int64) (*worker, error) {
	cmd.Env = append(cmd.Environ(), workerEnv+"="+strconv.FormatInt(memory, 10), "GOTRACEBACK=none")
	// A worker dies with the server, even in the middle of a policy that
	// would never finish.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start policy worker: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start policy worker: %w", err)
	}
	w := &worker{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout), stderr: &headBuffer{max: 4 << 10}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start policy worker %s: %w", cmd.Path, err)
	}
	go func() {
		_ = cmd.Wait() // the exit is read from ProcessState and stderr
		close(w.exited)
	}()
	hello := make(chan error, 1)
	go func() {
		frame, err := readFrame(w.stdout)
		if err == nil && !bytes.Equal(frame, ready) {
			err = fmt.Errorf("unexpected first message %.40q", frame)
		}
		hello <- err
	}()
	select {
	case err = <-hello:
	case <-time.After(startTimeout):
		err = fmt.Errorf("no answer within %s", startTimeout)
	}
	if err != nil {
		w.stop()
		return nil, fmt.Errorf("start policy worker %s (does the binary link the policy package?): %w; stderr: %s", cmd.Path, err, w.stderr)
	}
	return w, nil
}

// call sends req and reads the answer. On any error the worker has been
// stopped and must not be used again. The worker is killed when timeout
// passes or ctx ends first; the error is then a *BudgetError (time), as it
// is when the worker died out of memory.
func (w *worker) call(ctx context.Context, req request, timeout time.Duration) (response, error) {
	frame, err := json.Marshal(req)
	if err != nil {
		return response{}, fmt.Errorf("encode policy request: %w", err)
	}
	var timedOut, cancelled bool
	var mu sync.Mutex
	kill := func(flag *bool) func() {
		return func() {
			mu.Lock()
			*flag = true
			mu.Unlock()
			_ = w.cmd.Process.Kill() // already gone is fine: the read fails either way
		}
	}
	timer := time.AfterFunc(timeout, kill(&timedOut))
	stopCtx := context.AfterFunc(ctx, kill(&cancelled))
	answer, err := w.exchange(frame)
	timer.Stop()
	stopCtx()
	if err == nil {
		var resp response
		if err := json.Unmarshal(answer, &resp); err != nil {
			w.stop()
			return response{}, fmt.Errorf("decode policy worker answer: %w", err)
		}
		return resp, nil
	}
	// The worker may be alive (a garbled answer): it cannot be trusted
	// with another request either way.
	w.stop()
	mu.Lock()
	defer mu.Unlock()
	switch {
	case cancelled && !timedOut:
		return response{}, fmt.Errorf("policy evaluation abandoned: %w", ctx.Err())
	case timedOut:
		return response{}, &BudgetError{Budget: BudgetTime}
	case bytes.Contains(w.stderr.Bytes(), []byte("out of memory")):
		return response{}, &BudgetError{Budget: BudgetMemory}
	}
	return response{}, fmt.Errorf("policy worker failed (%s): %w; stderr: %s", w.cmd.ProcessState, err, w.stderr)
}

func (w *worker) exchange(frame []byte) ([]byte, error) {
	if err := writeFrame(bufio.NewWriter(w.stdin), frame); err != nil {
		return nil, err
	}
	return readFrame(w.stdout)
}

// stop kills the worker and waits for it.
func (w *worker) stop() {
	_ = w.stdin.Close()
	_ = w.cmd.Process.Kill() // an exited worker cannot be killed, and needs not be
	<-w.exited
}

// headBuffer keeps the first max bytes written to it: where a worker says
// why it failed (its environment asks the runtime for no stack traces).
type headBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *headBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p[:min(len(p), b.max-len(b.buf))]...)
	return len(p), nil
}

// Bytes returns a copy of what is kept.
func (b *headBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf)
}

func (b *headBuffer) String() string { return string(bytes.TrimSpace(b.Bytes())) }

// keyedLock lets one holder per key at a time and forgets keys nobody
// holds or waits for.
type keyedLock struct {
	mu   sync.Mutex
	keys map[string]*keyLock
}

type keyLock struct {
	turn  chan struct{} // holds a token while the key is free
	users int
}

// lock waits for key's turn, or for ctx to end.
func (k *keyedLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.keys == nil {
		k.keys = map[string]*keyLock{}
	}
	l := k.keys[key]
	if l == nil {
		l = &keyLock{turn: make(chan struct{}, 1)}
		l.turn <- struct{}{}
		k.keys[key] = l
	}
	l.users++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if l.users--; l.users == 0 {
			delete(k.keys, key)
		}
	}
	select {
	case <-l.turn:
		return func() { l.turn <- struct{}{}; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("wait for the namespace's previous policy: %w", ctx.Err())
	}
}
