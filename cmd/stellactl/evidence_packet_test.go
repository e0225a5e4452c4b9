package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/stella-ops/stella/internal/evidence"
)

// A packet from elsewhere that smuggles in a symbolic link, here one that
// would make the host's own key the packet's signing key, is refused by
// name, with the malformed-packet exit code, before anything is verified.
func TestHostilePacketsAreRefusedByName(t *testing.T) {
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	statement := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
	for _, hdr := range []*tar.Header{
		{Name: evidence.FileStatement, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(statement))},
		{Name: evidence.FileSigningKey, Typeflag: tar.TypeSymlink, Linkname: "/etc/ssh/ssh_host_ed25519_key.pub", Mode: 0o777},
	} {
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(statement[:hdr.Size]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "decision.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"evidence", "verify", path}, {"replay", path}} {
		t.Run(strings.Join(args[:len(args)-1], " "), func(t *testing.T) {
			streams, _, out, _ := genericiooptions.NewTestIOStreams()
			root := rootCommand(streams)
			root.SetArgs(args)
			err := root.Execute()
			var exit *exitError
			if !errors.As(err, &exit) || exit.code != exitMalformed {
				t.Fatalf("got %v, want exit %d", err, exitMalformed)
			}
			for _, want := range []string{path, `packet member "signing.pub" is a symbolic link; refused`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q: %v", want, err)
				}
			}
			if out.Len() != 0 {
				t.Errorf("printed on refusing: %s", out)
			}
		})
	}
}
