package evidence

import (
	"sync"
	"testing"

	"github.com/go-logr/logr"
)

// Replicas that start at the same moment on one new evidence directory make
// its keys once: every one of them signs with the same key and names the
// same log.
func TestReplicasStartingTogetherShareOneSetOfKeys(t *testing.T) {
	dir := t.TempDir()
	const replicas = 8
	var (
		start   sync.WaitGroup
		done    sync.WaitGroup
		keyIDs  [replicas]string
		origins [replicas]string
		errs    [replicas]error
	)
	start.Add(1)
	for i := range replicas {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			s, err := OpenSealer(dir, nil, logr.Discard())
			if err != nil {
				errs[i] = err
				return
			}
			keyIDs[i], origins[i] = s.KeyID(), s.origin
			errs[i] = s.Close()
		}()
	}
	start.Done()
	done.Wait()
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if keyIDs[i] != keyIDs[0] || origins[i] != origins[0] {
			t.Errorf("replica %d signs with key %s for log %s; replica 0 with %s for %s", i, keyIDs[i], origins[i], keyIDs[0], origins[0])
		}
	}
}
