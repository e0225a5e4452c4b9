// Package tb names what test helpers that start real servers need of a
// test, so that both go test and ginkgo (GinkgoT) tests can use them, and
// holds what those helpers share.
package tb

import "net"

// T is satisfied by *testing.T and by ginkgo's GinkgoT().
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// FreePort is a port on 127.0.0.1 that nothing listens on now.
func FreePort(t T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
