package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dataFormat is the layout version of a data directory. A directory written
// by a newer Stella is refused rather than guessed at.
const dataFormat = 1

// markerFile is written last when a data directory is initialised: its
// presence says the directory is complete.
const markerFile = "stella.json"

type dataMarker struct {
	Format      int       `json:"format"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedWith string    `json:"createdWith"`
}

// dataDir is the layout of the directory that holds a control plane's state.
type dataDir string

func (d dataDir) path(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}
func (d dataDir) pki() string        { return d.path("pki") }
func (d dataDir) etcd() string       { return d.path("etcd") }
func (d dataDir) kubeconfig() string { return d.path("admin.kubeconfig") }
func (d dataDir) evidence() string   { return d.path("evidence") }
func (d dataDir) scan() string       { return d.path("scan") }

// check says whether the directory is new (to be initialised) or a complete
// Stella data directory of a format this binary reads. Anything else is an
// error that says what is wrong and what to do; nothing is changed.
func (d dataDir) check() (isNew bool, err error) {
	entries, err := os.ReadDir(string(d))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read data directory %s: %w", d, err)
	}
	raw, err := os.ReadFile(d.path(markerFile))
	if errors.Is(err, fs.ErrNotExist) {
		if len(entries) == 0 || len(entries) == 1 && entries[0].Name() == lockFile {
			return true, nil
		}
		return false, fmt.Errorf("data directory %s is not empty but has no %s: it is half-initialised or not a Stella data directory; "+
			"refusing to initialise over it (move it away, or point --data-dir at an empty directory)", d, markerFile)
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", d.path(markerFile), err)
	}
	var m dataMarker
	if err := json.Unmarshal(raw, &m); err != nil || m.Format == 0 {
		return false, fmt.Errorf("%s is corrupt (%v): restore the data directory from a backup", d.path(markerFile), errOrZero(err))
	}
	if m.Format > dataFormat {
		return false, fmt.Errorf("data directory %s has format %d, written by a newer Stella (%s); this binary reads format %d: upgrade stella",
			d, m.Format, m.CreatedWith, dataFormat)
	}
	return false, nil
}

func errOrZero(err error) error {
	if err != nil {
		return err
	}
	return errors.New("format is 0")
}

// markInitialised writes the marker that completes initialisation.
func (d dataDir) markInitialised(createdWith string) error {
	raw, err := json.MarshalIndent(dataMarker{Format: dataFormat, CreatedAt: time.Now().UTC(), CreatedWith: createdWith}, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.path(markerFile + ".tmp")
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.path(markerFile))
}

// lockFile is locked (flock) by the process that uses the data directory,
// and holds that process's ID and start time, so that a second process is
// refused at once and told which one to stop.
const lockFile = "stella.lock"

// dataLock is a held lock of a data directory; the kernel releases it when
// the process ends, however it ends.
type dataLock struct{ file *os.File }

// Close releases the lock.
func (l *dataLock) Close() error { return l.file.Close() }

// lock takes the data directory for this process, creating the directory
// when absent. A directory another process holds is refused at once: etcd
// would otherwise wait on its own lock and start serving the moment the
// other process exits.
func (d dataDir) lock(holder string) (*dataLock, error) {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", d, err)
	}
	path := d.path(lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		who, _ := os.ReadFile(path)
		held := strings.TrimSpace(string(who))
		if held == "" {
			held = "a process that has not written its ID yet"
		}
		return nil, fmt.Errorf("data directory %s is in use by %s (it holds the lock %s): stop that process first, "+
			"or point --data-dir at another directory", d, held, path)
	}
	// The lock is ours: say who holds it. A stale line from a process that
	// ended is replaced here; the flock, not the content, is the lock.
	line := fmt.Sprintf("process %d (%s, started %s)\n", os.Getpid(), holder, time.Now().UTC().Format(time.RFC3339))
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(line), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &dataLock{file: f}, nil
}

// etcdDB is etcd's database in its data directory.
func etcdDB(etcdDir string) string { return filepath.Join(etcdDir, "member", "snap", "db") }

// errStoreMissing is a data directory that held a store and no longer
// does.
var errStoreMissing = errors.New("the store is missing")

// checkStore looks at the embedded etcd's data of a data directory that
// was initialised before: it must be there and its database must be
// intact. Starting etcd over a damaged database panics inside etcd, and
// starting it without one would begin an empty store beside the old PKI
// and evidence log, forking the evidence history; both are refused with
// what to do. Nothing is changed.
func (d dataDir) checkStore() error {
	member := filepath.Join(d.etcd(), "member")
	if _, err := os.Stat(member); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: data directory %s was initialised (%s) but has no etcd store %s; "+
			"if a volume was lost, restore from a backup (stella snapshot restore FILE --data-dir DIR); "+
			"to begin an empty store and keep the PKI and the evidence log, start with --reinitialize-store",
			errStoreMissing, d, markerFile, member)
	} else if err != nil {
		return fmt.Errorf("read the etcd store %s: %w", member, err)
	}
	db := etcdDB(d.etcd())
	if err := checkBoltDB(db); err != nil {
		return fmt.Errorf("etcd's database %s is damaged (%w); etcd was not started and nothing was changed: "+
			"restore the data directory from a backup (stella snapshot restore FILE --data-dir DIR), "+
			"or start with --reinitialize-store to move the damaged store aside and begin an empty one", db, err)
	}
	return nil
}

// checkBoltDB opens a bbolt database read-only and runs its consistency
// check. A damaged file is an error, never a panic.
func checkBoltDB(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading it failed: %v", r)
		}
	}()
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		// Every error is read, so that the check's goroutine ends and
		// the transaction can close; the first few are reported.
		var found []error
		for err := range tx.Check() {
			if len(found) < 3 {
				found = append(found, err)
			}
		}
		return errors.Join(found...)
	})
}

// reinitializeStore begins an empty store in a data directory that was
// initialised before: a damaged store is moved aside first, never deleted.
// It returns what was kept, for the operator.
func (d dataDir) reinitializeStore(cause error, evidenceDir string) ([]string, error) {
	var kept []string
	if !errors.Is(cause, errStoreMissing) {
		aside := fmt.Sprintf("%s.damaged-%s", d.etcd(), time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(d.etcd(), aside); err != nil {
			return nil, fmt.Errorf("move the damaged store %s aside: %w", d.etcd(), err)
		}
		kept = append(kept, "the damaged store, moved to "+aside)
	}
	kept = append(kept, "the CA, certificates and keys in "+d.pki()+" (kubeconfigs and agent certificates stay valid)")
	if _, err := os.Stat(evidenceDir); err == nil {
		kept = append(kept, "the evidence signing keys, transparency log and blobs in "+evidenceDir+
			" (the log goes on from its last entry; packets sealed before still verify, but the objects that named them are gone)")
	}
	kept = append(kept, d.path(markerFile))
	return kept, nil
}
