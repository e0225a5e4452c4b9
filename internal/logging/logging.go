// Package logging keeps Stella's logs quiet at the default verbosity: the
// Kubernetes libraries speak only to report errors, and errors they are known
// to report spuriously while a control plane starts are dropped.
package logging

import (
	"flag"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrl "sigs.k8s.io/controller-runtime"
)

// knownSpurious are errors the Kubernetes libraries log on every healthy
// start of an embedded control plane: a message and a part of its error.
var knownSpurious = []struct{ msg, err string }{
	// component-base/metrics: no label allow-list manifest is configured.
	{msg: "The manifest file is empty, ignoring."},
	// The API server's identity Lease goes to kube-system, which its own
	// bootstrap controller creates a moment later; it retries.
	{msg: "Failed to ensure lease exists, will retry", err: `namespaces "kube-system" not found`},
	// The same race on a fresh data directory, for the API server's
	// service-account token tracking ConfigMap; it retries.
	{msg: "Error while syncing ConfigMap", err: `namespaces "kube-system" not found`},
	// Until the API server has loaded the Stella CRDs' schemas, the
	// admission policy plugin cannot type objects; start-up waits that out.
	{msg: "Unhandled Error", err: "no schema for stella-ops.org/"},
	// controller-runtime reports the Lease it gives up on a clean stop.
	{msg: "error received after stop sequence was engaged", err: "leader election lost"},
}

// Setup routes klog and controller-runtime through a filter and returns the
// logger for Stella's own messages. At verbosity 0 the libraries log errors
// only; from verbosity 1 on they log everything, as they would on their own.
func Setup(verbosity int) logr.Logger {
	var flags flag.FlagSet
	klog.InitFlags(&flags)
	_ = flags.Set("v", strconv.Itoa(verbosity))
	out := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(verbosity)))
	libraries := logr.New(&filterSink{LogSink: out.GetSink(), verbose: verbosity > 0})
	klog.SetLogger(libraries)
	ctrl.SetLogger(libraries)
	return out.WithName("stella")
}

type filterSink struct {
	logr.LogSink
	verbose bool
}

func (s *filterSink) Enabled(level int) bool {
	return s.verbose && s.LogSink.Enabled(level)
}

func (s *filterSink) Info(level int, msg string, kv ...any) {
	if s.verbose {
		s.LogSink.Info(level, msg, kv...)
	}
}

func (s *filterSink) Error(err error, msg string, kv ...any) {
	if !s.verbose && isKnownSpurious(err, msg) {
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s *filterSink) WithValues(kv ...any) logr.LogSink {
	return &filterSink{LogSink: s.LogSink.WithValues(kv...), verbose: s.verbose}
}

func (s *filterSink) WithName(name string) logr.LogSink {
	return &filterSink{LogSink: s.LogSink.WithName(name), verbose: s.verbose}
}

// WithCallDepth keeps the caller's file and line in the output.
func (s *filterSink) WithCallDepth(depth int) logr.LogSink {
	inner, ok := s.LogSink.(logr.CallDepthLogSink)
	if !ok {
		return s
	}
	return &filterSink{LogSink: inner.WithCallDepth(depth), verbose: s.verbose}
}

func isKnownSpurious(err error, msg string) bool {
	for _, k := range knownSpurious {
		if !strings.Contains(msg, k.msg) {
			continue
		}
		if k.err == "" || (err != nil && strings.Contains(err.Error(), k.err)) {
			return true
		}
	}
	return false
}
