package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
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
		if len(entries) == 0 {
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
