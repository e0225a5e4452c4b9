package scan

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	cpb "github.com/google/osv-scalibr/binary/proto/config_go_proto"
	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	"github.com/google/osv-scalibr/extractor/filesystem/language/golang/gobinary"
	javaarchive "github.com/google/osv-scalibr/extractor/filesystem/language/java/archive"
	"github.com/google/osv-scalibr/extractor/filesystem/language/javascript/packagelockjson"
	"github.com/google/osv-scalibr/extractor/filesystem/language/python/wheelegg"
	"github.com/google/osv-scalibr/extractor/filesystem/os/apk"
	apkmeta "github.com/google/osv-scalibr/extractor/filesystem/os/apk/metadata"
	"github.com/google/osv-scalibr/extractor/filesystem/os/dpkg"
	dpkgmeta "github.com/google/osv-scalibr/extractor/filesystem/os/dpkg/metadata"
	"github.com/google/osv-scalibr/extractor/filesystem/os/rpm"
	rpmmeta "github.com/google/osv-scalibr/extractor/filesystem/os/rpm/metadata"
	scalibrfs "github.com/google/osv-scalibr/fs"
	scalibrlog "github.com/google/osv-scalibr/log"
)

// recordFormat versions the layer record; a change in it or in an
// extractor's version is a new cache.
const recordFormat = 1

// inMemoryFileLimit is the largest file an extractor reads from memory;
// larger ones (Go binaries, fat jars) are spooled to a temporary file.
const inMemoryFileLimit = 32 << 20

// osReleasePaths are where os-release(5) says to look, in that order.
var osReleasePaths = []string{"etc/os-release", "usr/lib/os-release"}

// extractors are the osv-scalibr plugins Stella uses: OS package databases
// (dpkg, apk, rpm),
// Go build info, and the language manifests images commonly carry.
type extractors struct {
	list []filesystem.Extractor
	// id names the set and its versions, for the layer cache.
	id string
}

var quietScalibr sync.Once

func newExtractors() (*extractors, error) {
	// osv-scalibr logs to stderr on its own (a missing os-release, a file it
	// cannot parse); Stella reports what matters in the scan result.
	quietScalibr.Do(func() { scalibrlog.SetLogger(discardLogger{}) })
	cfg := &cpb.PluginConfig{}
	var list []filesystem.Extractor
	for _, newExtractor := range []func(*cpb.PluginConfig) (filesystem.Extractor, error){
		dpkg.New, apk.New, rpm.New, gobinary.New, packagelockjson.New, wheelegg.New, javaarchive.New,
	} {
		e, err := newExtractor(cfg)
		if err != nil {
			return nil, err
		}
		list = append(list, e)
	}
	h := sha256.New()
	fmt.Fprintf(h, "record %d\n", recordFormat)
	for _, e := range list {
		fmt.Fprintf(h, "%s %d\n", e.Name(), e.Version())
	}
	return &extractors{list: list, id: hex.EncodeToString(h.Sum(nil))[:16]}, nil
}

// layerRecord is what one layer holds, as far as scanning goes.
type layerRecord struct {
	Format int `json:"format"`
	// Files are the files the layer adds that hold packages (or hold none
	// any more: an emptied package database hides the one below), sorted.
	Files []fileRecord `json:"files,omitempty"`
	// Deleted are paths the layer deletes (whiteouts), with what is below.
	Deleted []string `json:"deleted,omitempty"`
	// Opaque are directories whose content in lower layers the layer hides.
	Opaque []string `json:"opaque,omitempty"`
	// Problems are files an extractor could not read.
	Problems []string `json:"problems,omitempty"`
}

// fileRecord is one file of a layer that matters for scanning.
type fileRecord struct {
	Path     string    `json:"path"`
	Packages []Package `json:"packages,omitempty"`
	// OSRelease is the content of an os-release file.
	OSRelease string `json:"osRelease,omitempty"`
}

// extractLayer reads a layer's uncompressed tar stream once, handing each
// file that an extractor wants to it. It reads the stream to its end, so a
// layer whose content does not match its digest fails here.
func (x *extractors) extractLayer(ctx context.Context, r io.Reader, spool string) (*layerRecord, error) {
	rec := &layerRecord{Format: recordFormat}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the layer's tar stream: %w", err)
		}
		name := cleanPath(hdr.Name)
		if name == "" {
			continue
		}
		dir, base := path.Split(name)
		if base == ".wh..wh..opq" {
			rec.Opaque = append(rec.Opaque, strings.TrimSuffix(dir, "/"))
			continue
		}
		if hidden, ok := strings.CutPrefix(base, ".wh."); ok {
			rec.Deleted = append(rec.Deleted, dir+hidden)
			continue
		}
		if slices.Contains(osReleasePaths, name) {
			var content []byte
			if hdr.Typeflag == tar.TypeReg {
				if content, err = io.ReadAll(io.LimitReader(tr, 64<<10)); err != nil {
					return nil, fmt.Errorf("read %s: %w", name, err)
				}
			}
			rec.Files = append(rec.Files, fileRecord{Path: name, OSRelease: string(content)})
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		file := tarFile{path: name, info: hdr.FileInfo()}
		wanted := slices.DeleteFunc(slices.Clone(x.list), func(e filesystem.Extractor) bool { return !e.FileRequired(file) })
		if len(wanted) == 0 {
			continue
		}
		f, err := x.extractFile(ctx, tr, file, wanted, spool)
		if err != nil {
			return nil, err
		}
		rec.Problems = append(rec.Problems, f.problems...)
		rec.Files = append(rec.Files, fileRecord{Path: name, Packages: f.packages})
	}
	// Drain what follows the tar trailer, so that the digest check of the
	// layer's reader sees all of it.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, fmt.Errorf("read the layer: %w", err)
	}
	slices.SortFunc(rec.Files, func(a, b fileRecord) int { return strings.Compare(a.Path, b.Path) })
	slices.Sort(rec.Deleted)
	slices.Sort(rec.Opaque)
	return rec, nil
}

type extractedFile struct {
	packages []Package
	problems []string
}

// extractFile runs the extractors that want a file on its content.
func (x *extractors) extractFile(ctx context.Context, r io.Reader, file tarFile, wanted []filesystem.Extractor, spool string) (extractedFile, error) {
	content, closeContent, err := readContent(r, file.info.Size(), spool)
	if err != nil {
		return extractedFile{}, fmt.Errorf("read %s: %w", file.path, err)
	}
	defer closeContent()
	var out extractedFile
	for _, e := range wanted {
		inv, err := e.Extract(ctx, &filesystem.ScanInput{
			FS:     emptyFS{},
			Path:   file.path,
			Root:   "", // no directory on disk: extractors that want a real path get a copy of the file
			Info:   file.info,
			Reader: io.NewSectionReader(content, 0, file.info.Size()),
		})
		if err != nil {
			if ctx.Err() != nil {
				return extractedFile{}, ctx.Err()
			}
			out.problems = append(out.problems, fmt.Sprintf("%s: %s: %v", file.path, e.Name(), err))
		}
		for _, p := range inv.Packages {
			if pkg, ok := packageOf(p, file.path); ok {
				out.packages = append(out.packages, pkg)
			}
		}
	}
	slices.SortFunc(out.packages, comparePackages)
	out.packages = slices.Compact(out.packages)
	return out, nil
}

// readContent makes a file's content readable at random offsets, from
// memory or, for large files, from a temporary file under spool.
func readContent(r io.Reader, size int64, spool string) (io.ReaderAt, func(), error) {
	if size <= inMemoryFileLimit {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(b), func() {}, nil
	}
	f, err := os.CreateTemp(spool, "file-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		f.Close()
		os.Remove(f.Name())
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		cleanup()
		return nil, nil, err
	}
	return f, cleanup, nil
}

// packageOf turns what an extractor found into a Package.
func packageOf(p *extractor.Package, file string) (Package, bool) {
	pkg := Package{Name: p.Name, Version: p.Version, Type: p.PURLType, Path: file}
	switch m := p.Metadata.(type) {
	case *dpkgmeta.Metadata:
		if m.SourceName != "" && m.SourceName != p.Name {
			pkg.Source = m.SourceName
		}
		if m.SourceVersion != "" && m.SourceVersion != p.Version {
			pkg.SourceVersion = m.SourceVersion
		}
	case *apkmeta.Metadata:
		if m.OriginName != "" && m.OriginName != p.Name {
			pkg.Source = m.OriginName
		}
	case *rpmmeta.Metadata:
		// RPM distributions' advisories name binary packages, and give
		// the epoch when it is not zero.
		if m.Epoch > 0 {
			pkg.Version = fmt.Sprintf("%d:%s", m.Epoch, p.Version)
		}
	}
	if pkg.Type == TypeGo && pkg.Name == "go" {
		pkg.Name = "stdlib" // the name Go's advisories give the toolchain's packages
	}
	switch pkg.Type {
	case TypeDebian, TypeAlpine, TypeRPM, TypeGo, TypeNPM, TypePyPI, TypeMaven:
	default:
		return Package{}, false
	}
	if pkg.Name == "" || pkg.Version == "" {
		return Package{}, false
	}
	return pkg, true
}

func comparePackages(a, b Package) int {
	return cmp.Or(
		strings.Compare(a.Path, b.Path),
		strings.Compare(a.Type, b.Type),
		strings.Compare(a.Name, b.Name),
		strings.Compare(a.Version, b.Version),
		strings.Compare(a.Source, b.Source),
		strings.Compare(a.SourceVersion, b.SourceVersion),
	)
}

// cleanPath is a tar entry's path relative to the image root, or empty.
func cleanPath(name string) string {
	p := path.Clean("/" + name)
	return strings.TrimPrefix(p, "/")
}

// tarFile is a layer's file as extractors ask about it.
type tarFile struct {
	path string
	info fs.FileInfo
}

func (f tarFile) Path() string               { return f.path }
func (f tarFile) Stat() (fs.FileInfo, error) { return f.info, nil }

// emptyFS is the filesystem extractors see besides their file: the image's
// os-release is read when the layers are put together, not per layer.
type emptyFS struct{}

var _ scalibrfs.FS = emptyFS{}

func (emptyFS) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (emptyFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
}

func (emptyFS) Stat(name string) (fs.FileInfo, error) {
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

type discardLogger struct{}

func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Warnf(string, ...any)  {}
func (discardLogger) Infof(string, ...any)  {}
func (discardLogger) Debugf(string, ...any) {}
func (discardLogger) Error(...any)          {}
func (discardLogger) Warn(...any)           {}
func (discardLogger) Info(...any)           {}
func (discardLogger) Debug(...any)          {}
