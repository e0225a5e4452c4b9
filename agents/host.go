package agents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/stella-ops/stella/internal/pki"
)

// Host is the machine whose files and commands a driver uses besides its
// runtime's API: the version sticker, the compose file, the compose CLI. It
// is the machine stella-agent runs on, or a host the server reaches over
// SSH, so that one driver serves both.
type Host interface {
	// ReadFile returns the content of path; the error wraps fs.ErrNotExist
	// when there is no such file.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// WriteFile replaces path with data atomically, creating its
	// directory: a reader sees the old content or the new, never a part.
	WriteFile(ctx context.Context, path string, data []byte) error
	// Run runs argv in dir and returns what it printed, stdout and stderr
	// together; a command that exits non-zero is an error.
	Run(ctx context.Context, dir string, argv ...string) ([]byte, error)
	// Name says which host this is, for messages.
	Name() string
}

// LocalHost is the machine the process runs on.
type LocalHost struct{}

var _ Host = LocalHost{}

// ReadFile reads a local file.
func (LocalHost) ReadFile(_ context.Context, path string) ([]byte, error) {
	return os.ReadFile(path)
}

// WriteFile writes a local file atomically, readable by all.
func (LocalHost) WriteFile(_ context.Context, path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, data, 0o644)
}

// Run runs a local command.
func (LocalHost) Run(ctx context.Context, dir string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command to run")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Name is "this host".
func (LocalHost) Name() string { return "this host" }

// IsNotExist says whether err is a Host's missing-file error.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// ReadOptional reads path on host; nil without error when it is missing.
func ReadOptional(ctx context.Context, host Host, path string) ([]byte, error) {
	data, err := host.ReadFile(ctx, path)
	if IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", path, host.Name(), err)
	}
	return data, nil
}
