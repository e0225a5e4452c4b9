// Package tb names what test helpers that start real servers need of a
// test, so that both go test and ginkgo (GinkgoT) tests can use them.
package tb

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
