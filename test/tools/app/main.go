// Command app is the program inside the test images that Stella deploys in
// its own tests: it serves GET /healthz on $ADDR (default 127.0.0.1:8080),
// answering 200 unless $HEALTHY is "no", and "app check" is the image's
// health check command. With $CRASH set to "yes" it exits with code 1 at
// once, as a release that cannot start does. It is built static, for a FROM scratch image.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	if len(os.Args) > 1 && os.Args[1] == "check" {
		os.Exit(check(addr))
	}
	if os.Getenv("CRASH") == "yes" {
		fmt.Fprintln(os.Stderr, "crashing on purpose")
		os.Exit(1)
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if os.Getenv("HEALTHY") == "no" {
			http.Error(w, "unhealthy on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok", os.Getenv("VERSION"))
	})
	// As a container's first process it gets no default signal handling:
	// stop at once on SIGTERM, as a well-behaved service does.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		os.Exit(0)
	}()
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

func check(addr string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}
