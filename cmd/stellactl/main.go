// Command stellactl is the command-line client of a Stella control plane. It
// is kubectl's command library pointed at Stella's API, plus the few commands
// that only make sense for Stella (auth create-user).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmdutil.BehaviorOnFatal(func(msg string, code int) {
		if msg != "" {
			fmt.Fprintln(os.Stderr, withServeHint(strings.TrimSuffix(msg, "\n")))
		}
		os.Exit(code)
	})
	err := rootCommand(streams).ExecuteContext(ctx)
	// The kubectl library commands print their own errors and exit; ours
	// return them. Both end up in the same formatter, so an API server error
	// reads the same (with field paths for Invalid) whichever command hit it.
	stop()
	var exit *exitError
	if errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "error:", exit.err)
		os.Exit(exit.code)
	}
	cmdutil.CheckErr(err)
}

// kubectlRefused is how kubectl's error formatter ends a refused connection.
const kubectlRefused = " was refused - did you specify the right host or port?"

// withServeHint points a refused connection at the likeliest cause: no
// control plane is running there.
func withServeHint(msg string) string {
	if !strings.HasSuffix(msg, kubectlRefused) {
		return msg
	}
	return strings.TrimSuffix(msg, kubectlRefused) +
		` was refused: is a Stella control plane running there? Start one with "stella serve", or point --kubeconfig or --server at yours`
}
