package policy

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// workerEnv, set to the worker's memory budget in bytes, makes a process a
// policy worker: it serves requests on stdin and stdout from this package's
// initialisation on and exits when stdin closes. The trigger lives here, not
// in a main function, so that every binary linking this package (the
// server, stellactl, test binaries) is its own worker and none can forget
// to be one: a binary that re-executed itself without the trigger would
// run its whole main (or its whole test suite) again.
const workerEnv = "STELLA_POLICY_WORKER"

// maxFrame bounds one protocol message either way: a request holds a
// source of at most MaxSourceBytes and an input of at most MaxInputBytes.
const maxFrame = MaxSourceBytes + MaxInputBytes + 64<<10

func init() {
	budget, ok := os.LookupEnv(workerEnv)
	if !ok {
		return
	}
	if err := serveWorker(budget, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "policy worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// op is what a request asks of a worker.
type op string

const (
	opCompile  op = "compile"
	opEvaluate op = "evaluate"
)

// request is one job for a worker: compile source, and with opEvaluate
// evaluate it on input.
type request struct {
	Op     op              `json:"op"`
	Source string          `json:"source"`
	Input  json.RawMessage `json:"input,omitempty"`
}

// response is a worker's answer. CompileError and EvaluateError are the
// messages of Compile's and Evaluate's errors; Decision is set when
// evaluation gave one.
type response struct {
	CompileError  string    `json:"compileError,omitempty"`
	EvaluateError string    `json:"evaluateError,omitempty"`
	Decision      *Decision `json:"decision,omitempty"`
}

// ready is the first frame a worker writes, once its limits are in place.
var ready = []byte(`"ready"`)

// serveWorker bounds this process's memory, then answers requests until in
// closes. Running out of memory ends the process (the Go runtime cannot
// recover from it); the parent sees the exit and reports the budget.
func serveWorker(budget string, in io.Reader, out io.Writer) error {
	limit, err := strconv.ParseInt(budget, 10, 64)
	if err != nil || limit <= 0 {
		return fmt.Errorf("%s=%q: want the memory budget in bytes", workerEnv, budget)
	}
	if err := limitMemory(limit); err != nil {
		return err
	}
	// One evaluation needs one thread; a policy that spins must not take
	// every core from the server, and yields to it.
	runtime.GOMAXPROCS(1)
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 10) // best effort: a worker at normal priority still works

	r, w := bufio.NewReader(in), bufio.NewWriter(out)
	if err := writeFrame(w, ready); err != nil {
		return err
	}
	for {
		frame, err := readFrame(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var req request
		if err := json.Unmarshal(frame, &req); err != nil {
			return fmt.Errorf("decode request: %w", err)
		}
		resp, err := json.Marshal(handle(req))
		if err != nil {
			return fmt.Errorf("encode response: %w", err)
		}
		if err := writeFrame(w, resp); err != nil {
			return err
		}
	}
}

// limitMemory caps the growth of this process's address space at budget
// bytes beyond what it has mapped now (the executable and the runtime's
// own reservations, which vary by binary), and asks the garbage collector
// to keep the heap well under it. The cap is a hard limit: an allocation
// past it fails and the runtime exits with "out of memory".
func limitMemory(budget int64) error {
	mapped, err := mappedBytes()
	if err != nil {
		return err
	}
	limit := uint64(mapped + budget)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		return fmt.Errorf("limit the address space to %d bytes: %w", limit, err)
	}
	debug.SetMemoryLimit(budget / 2)
	return nil
}

// mappedBytes is the process's current virtual size, from /proc/self/status.
func mappedBytes() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read the process's virtual size: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmSize %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmSize in /proc/self/status")
}

// handle runs one request in this process.
func handle(req request) response {
	prog, err := Compile(req.Source)
	if err != nil {
		return response{CompileError: err.Error()}
	}
	if req.Op != opEvaluate {
		return response{}
	}
	d, err := prog.evaluateJSON(req.Input)
	if err != nil {
		return response{EvaluateError: err.Error()}
	}
	return response{Decision: &d}
}

// writeFrame writes a 4-byte big-endian length, then data, and flushes.
func writeFrame(w *bufio.Writer, data []byte) error {
	if len(data) > maxFrame {
		return fmt.Errorf("message of %d bytes is over the limit of %d", len(data), maxFrame)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Flush()
}

// readFrame reads one message written by writeFrame; io.EOF when the other
// side closed between messages.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return nil, fmt.Errorf("message of %d bytes is over the limit of %d", size, maxFrame)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("read message: %w", io.ErrUnexpectedEOF)
	}
	return data, nil
}
