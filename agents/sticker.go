package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// StickerFile is the name of the version sticker on a target host.
const StickerFile = "stella.version.json"

// stickerFile is the JSON written to stella.version.json: which release
// Stella deployed to a target, so that people and scripts on the host can
// tell what should run there without asking the server.
type stickerFile struct {
	Target     string             `json:"target"`
	Release    string             `json:"release"`
	Version    string             `json:"version,omitempty"`
	Promotion  string             `json:"promotion,omitempty"`
	Components []stickerComponent `json:"components"`
	DeployedAt time.Time          `json:"deployedAt"`
}

type stickerComponent struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
}

// StickerPath is where the target's sticker lives: its spec.stickerPath, or
// <stateDir>/<target>/stella.version.json.
func StickerPath(target *v1alpha1.Target, stateDir string) string {
	if target.Spec.StickerPath != "" {
		return target.Spec.StickerPath
	}
	return filepath.Join(stateDir, target.Name, StickerFile)
}

// MarshalSticker is the content of stella.version.json recording s as
// deployed to target.
func MarshalSticker(target *v1alpha1.Target, s v1alpha1.VersionSticker) ([]byte, error) {
	f := stickerFile{Target: target.Namespace + "/" + target.Name, Release: s.Release, Version: s.Version, Promotion: s.Promotion}
	if s.DeployedAt != nil {
		f.DeployedAt = s.DeployedAt.UTC()
	}
	for _, c := range s.Components {
		f.Components = append(f.Components, stickerComponent{Name: c.Name, Image: string(c.Image), Digest: c.Image.Digest()})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// UnmarshalSticker reads the content of a stella.version.json.
func UnmarshalSticker(data []byte) (*v1alpha1.VersionSticker, error) {
	var f stickerFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	s := &v1alpha1.VersionSticker{Release: f.Release, Version: f.Version, Promotion: f.Promotion}
	if !f.DeployedAt.IsZero() {
		s.DeployedAt = &metav1.Time{Time: f.DeployedAt}
	}
	for _, c := range f.Components {
		s.Components = append(s.Components, v1alpha1.ComponentDigest{Name: c.Name, Image: v1alpha1.ImageDigestRef(c.Image)})
	}
	return s, nil
}

// WriteSticker records s as deployed to target, atomically: a reader sees
// the old sticker or the new one, never a part.
func WriteSticker(ctx context.Context, host Host, path string, target *v1alpha1.Target, s v1alpha1.VersionSticker) error {
	data, err := MarshalSticker(target, s)
	if err != nil {
		return err
	}
	if err := host.WriteFile(ctx, path, data); err != nil {
		return fmt.Errorf("write the version sticker %s on %s: %w", path, host.Name(), err)
	}
	return nil
}

// ReadSticker returns the sticker at path, or nil when Stella deployed
// nothing there yet.
func ReadSticker(ctx context.Context, host Host, path string) (*v1alpha1.VersionSticker, error) {
	data, err := ReadOptional(ctx, host, path)
	if err != nil || data == nil {
		return nil, err
	}
	s, err := UnmarshalSticker(data)
	if err != nil {
		return nil, fmt.Errorf("read the version sticker %s: %w (remove the file to let the next deployment write it again)", path, err)
	}
	return s, nil
}
