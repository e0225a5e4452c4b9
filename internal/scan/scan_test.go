package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
)

const dpkgStatus = `Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u1
Description: Secure Sockets Layer toolkit - shared libraries

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib (1:1.2.13.dfsg-1)
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
Description: removed, only its configuration files remain
`

const apkInstalled = `P:musl
V:1.2.3-r9
A:x86_64
o:musl

P:busybox-binsh
V:1.36.1-r5
A:x86_64
o:busybox

`

const packageLock = `{
  "name": "web", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
  "packages": {
    "": {"name": "web", "version": "1.0.0", "dependencies": {"lodash": "^4.17.20"}},
    "node_modules/lodash": {"version": "4.17.20", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"}
  }
}`

const pythonMetadata = "Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\n"

// advisories are hand-written OSV documents: fixed, unfixed, several
// ranges, another release's, and withdrawn.
var advisories = map[string]string{
	"DEBIAN-CVE-2099-0001": `{"id":"DEBIAN-CVE-2099-0001","modified":"2099-01-01T00:00:00Z","aliases":["CVE-2099-0001"],
		"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
		"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]}]}`,
	"DEBIAN-CVE-2099-0002": `{"id":"DEBIAN-CVE-2099-0002","modified":"2099-01-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u1"}]}]}]}`,
	"DEBIAN-CVE-2099-0003": `{"id":"DEBIAN-CVE-2099-0003","modified":"2099-01-01T00:00:00Z","aliases":["CVE-2099-0003"],
		"affected":[{"package":{"ecosystem":"Debian:12","name":"zlib"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}],
		"database_specific":{"severity":"LOW"}}]}`,
	"DEBIAN-CVE-2099-0004": `{"id":"DEBIAN-CVE-2099-0004","modified":"2099-01-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Debian:11","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}`,
	"DEBIAN-CVE-2099-0005": `{"id":"DEBIAN-CVE-2099-0005","modified":"2099-01-01T00:00:00Z","withdrawn":"2099-02-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}`,
	"GO-2099-0006": `{"id":"GO-2099-0006","modified":"2099-01-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Go","name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.20.0"},{"introduced":"1.21.0"},{"fixed":"99.0.0"}]}]}]}`,
	"GHSA-2099-0007": `{"id":"GHSA-2099-0007","modified":"2099-01-01T00:00:00Z","database_specific":{"severity":"HIGH"},
		"affected":[{"package":{"ecosystem":"npm","name":"lodash"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"4.17.21"}]}]}]}`,
	"PYSEC-2099-0008": `{"id":"PYSEC-2099-0008","modified":"2099-01-01T00:00:00Z","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
		"affected":[{"package":{"ecosystem":"PyPI","name":"requests"},"versions":["2.30.0"]}]}`,
	"GHSA-2099-0011": `{"id":"GHSA-2099-0011","modified":"2099-01-01T00:00:00Z","aliases":["CVE-2099-44228"],
		"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
		"affected":[{"package":{"ecosystem":"Maven","name":"org.apache.logging.log4j:log4j-core"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"2.0-beta9"},{"fixed":"2.15.0"}]}]}]}`,
	"ALPINE-CVE-2099-0009": `{"id":"ALPINE-CVE-2099-0009","modified":"2099-01-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Alpine:v3.20","name":"musl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2.3-r10"}]}]}]}`,
	"ALPINE-CVE-2099-0010": `{"id":"ALPINE-CVE-2099-0010","modified":"2099-01-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Alpine:v3.20","name":"busybox"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"last_affected":"1.36.1-r4"}]}]}]}`,
}

// jar is a Java archive holding one file.
func jar(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	w, err := z.Create(name)
	if err == nil {
		_, err = w.Write([]byte(content))
	}
	if err == nil {
		err = z.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fixture is a registry on 127.0.0.1 holding test images, and a
// cataloguer with its cache in a temporary directory.
type fixture struct {
	registry    *images.Registry
	cataloguer  *Cataloguer
	debian      string // reference by digest
	alpine      string
	debianLayer v1.Layer
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	reg, err := images.StartRegistry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	program, err := images.Program(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{registry: reg}
	f.debianLayer = must(images.Layer(
		images.File{Name: "usr/lib/os-release", Body: []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n")},
		images.File{Name: "etc/os-release", Typeflag: tar.TypeSymlink, Linkname: "../usr/lib/os-release"},
		images.File{Name: "var/lib/dpkg/status", Body: []byte(dpkgStatus)},
	))(t)
	appLayer := must(images.Layer(
		images.File{Name: "usr/local/bin/app", Mode: 0o755, Body: program},
		images.File{Name: "srv/web/package-lock.json", Body: []byte(packageLock)},
		images.File{Name: "usr/lib/python3/dist-packages/requests-2.30.0.dist-info/METADATA", Body: []byte(pythonMetadata)},
		images.File{Name: "opt/app/lib/log4j-core-2.14.1.jar", Body: jar(t, "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
			"groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n")},
	))(t)
	f.debian = f.push(t, "shop/api", f.debianLayer, appLayer)
	f.alpine = f.push(t, "shop/edge", must(images.Layer(
		images.File{Name: "etc/os-release", Body: []byte("ID=alpine\nVERSION_ID=3.20.3\n")},
		images.File{Name: "lib/apk/db/installed", Body: []byte(apkInstalled)},
	))(t))
	f.cataloguer = must(NewCataloguer(t.TempDir(), 2))(t)
	return f
}

func (f *fixture) push(t *testing.T, repo string, layers ...v1.Layer) string {
	t.Helper()
	img := must(mutate.AppendLayers(empty.Image, layers...))(t)
	return must(f.registry.Push(repo, "latest", img))(t)
}

func remoteImage(t *testing.T, ref string) v1.Image {
	t.Helper()
	return must(remote.Image(must(name.NewDigest(ref))(t), remote.WithContext(t.Context())))(t)
}

// must(f())(t) is what f returns, failing the test on its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func snapshotOf(t *testing.T, ids ...string) *Snapshot {
	t.Helper()
	var docs []Document
	for _, id := range ids {
		a, err := ParseAdvisory([]byte(advisories[id]))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		docs = append(docs, Document{Name: id, Raw: []byte(advisories[id]), Advisory: a})
	}
	return must(NewSnapshot(docs))(t)
}

func allAdvisories() []string {
	ids := make([]string, 0, len(advisories))
	for id := range advisories {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func findingIDs(r *Report) []string {
	var ids []string
	for _, f := range r.Findings {
		ids = append(ids, f.Advisory+" "+f.Package+" "+f.Version)
	}
	return ids
}

func TestScanFindsPackagesAndMatchesAdvisories(t *testing.T) {
	f := setUp(t)
	inv := must(f.cataloguer.Inventory(t.Context(), remoteImage(t, f.debian)))(t)
	if inv.OS != (OSRelease{ID: "debian", VersionID: "12"}) {
		t.Errorf("os-release through the /etc symlink: %+v", inv.OS)
	}
	var found []string
	for _, p := range inv.Packages {
		found = append(found, p.Ecosystem+" "+p.Name+" "+p.Version)
	}
	for _, want := range []string{"Maven org.apache.logging.log4j:log4j-core 2.14.1", "Debian:12 libssl3 3.0.11-1~deb12u1", "Debian:12 zlib1g 1:1.2.13.dfsg-1", "npm lodash 4.17.20", "PyPI requests 2.30.0", "Go stdlib"} {
		if !slices.ContainsFunc(found, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no %s among %q", want, found)
		}
	}
	if slices.ContainsFunc(found, func(s string) bool { return strings.Contains(s, " gone ") }) {
		t.Errorf("a package removed with its configuration left counts as installed: %q", found)
	}

	report := Evaluate(inv, snapshotOf(t, allAdvisories()...), nil, nil)
	want := []string{
		"DEBIAN-CVE-2099-0001 libssl3 3.0.11-1~deb12u1", // Critical, by its CVSS vector
		"GHSA-2099-0011 org.apache.logging.log4j:log4j-core 2.14.1",
		"GHSA-2099-0007 lodash 4.17.20",               // High, by GitHub's word
		"PYSEC-2099-0008 requests 2.30.0",             // Medium
		"DEBIAN-CVE-2099-0003 zlib1g 1:1.2.13.dfsg-1", // Low, unfixed
		"GO-2099-0006 stdlib",                         // Unknown
	}
	got := findingIDs(report)
	if len(got) != len(want) {
		t.Fatalf("findings %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("finding %d: %s, want %s", i, got[i], want[i])
		}
	}
	if fx := report.Findings[0]; fx.FixedIn != "3.0.11-1~deb12u2" || fx.Severity != v1alpha1.SeverityCritical || !slices.Equal(fx.Aliases, []string{"CVE-2099-0001"}) {
		t.Errorf("the openssl finding: %+v", fx)
	}
	if zlib := report.Findings[slices.IndexFunc(report.Findings, func(f v1alpha1.Finding) bool { return f.Package == "zlib1g" })]; zlib.FixedIn != "" {
		t.Errorf("an unfixed advisory has a fix: %+v", zlib)
	}
	if report.MaxSeverity != v1alpha1.SeverityCritical || report.Summary != (v1alpha1.SeverityCounts{Critical: 2, High: 1, Medium: 1, Low: 1, Unknown: 1}) {
		t.Errorf("summary %+v, max %s", report.Summary, report.MaxSeverity)
	}

	alpine := Evaluate(must(f.cataloguer.Inventory(t.Context(), remoteImage(t, f.alpine)))(t), snapshotOf(t, allAdvisories()...), nil, nil)
	if got := findingIDs(alpine); !slices.Equal(got, []string{"ALPINE-CVE-2099-0009 musl 1.2.3-r9"}) {
		t.Errorf("alpine findings %q", got)
	}
}

func TestScanReadsEachLayerOnce(t *testing.T) {
	f := setUp(t)
	if _, err := f.cataloguer.Inventory(t.Context(), remoteImage(t, f.debian)); err != nil {
		t.Fatal(err)
	}
	if n := f.cataloguer.LayersRead(); n != 2 {
		t.Fatalf("read %d layers for a two-layer image", n)
	}
	// Another image on the same base layer: only its own layer is read.
	other := f.push(t, "shop/worker", f.debianLayer, must(images.Layer(images.File{Name: "etc/motd", Body: []byte("hello\n")}))(t))
	inv := must(f.cataloguer.Inventory(t.Context(), remoteImage(t, other)))(t)
	if n := f.cataloguer.LayersRead(); n != 3 {
		t.Errorf("read %d layers in all; the shared base layer was read again", n)
	}
	if len(inv.Packages) != 2 {
		t.Errorf("the packages of the shared layer: %+v", inv.Packages)
	}
	// A new cataloguer on the same cache reads nothing.
	again := must(NewCataloguer(filepath.Dir(f.cataloguer.dir), 2))(t)
	if _, err := again.Inventory(t.Context(), remoteImage(t, other)); err != nil || again.LayersRead() != 0 {
		t.Errorf("a warm cache read %d layers (%v)", again.LayersRead(), err)
	}
}

func TestScanHonoursWhiteouts(t *testing.T) {
	f := setUp(t)
	ref := f.push(t, "shop/slim", f.debianLayer,
		must(images.Layer(images.File{Name: "srv/web/package-lock.json", Body: []byte(packageLock)}))(t),
		must(images.Layer(
			images.File{Name: "srv/web/.wh.package-lock.json"},
			images.File{Name: "var/lib/dpkg/status", Body: []byte("Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n")},
		))(t))
	inv := must(f.cataloguer.Inventory(t.Context(), remoteImage(t, ref)))(t)
	var names []string
	for _, p := range inv.Packages {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"zlib1g"}) {
		t.Errorf("after a whiteout and a rewritten status file: %q", names)
	}
}

func TestScanRefusesACorruptLayer(t *testing.T) {
	f := setUp(t)
	d := must(f.debianLayer.Digest())(t)
	// A registry that serves the layer with one byte changed.
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			body[len(body)/2] ^= 0xff
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img := must(mutate.AppendLayers(empty.Image, f.debianLayer))(t)
	ref := must(name.NewTag(host + "/shop/broken:latest"))(t)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	_, err := f.cataloguer.Inventory(t.Context(), remoteImage(t, host+"/shop/broken@"+must(img.Digest())(t).String()))
	if err == nil || !strings.Contains(err.Error(), "layer 1 ("+d.String()+")") {
		t.Fatalf("a corrupt layer: %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(f.cataloguer.dir, "layers", d.Hex+".json")); statErr == nil {
		t.Error("the corrupt layer's record was cached")
	}
}

const (
	vexDocNotAffected = `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/zlib","author":"platform-security",
		"timestamp":"2099-03-01T00:00:00Z","version":1,"statements":[{"vulnerability":{"name":"CVE-2099-0003"},
		"products":[{"@id":"pkg:oci/api@IMAGE","subcomponents":[{"@id":"pkg:deb/debian/zlib1g"}]}],
		"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`
	vexDocAffectedOlder = `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/zlib-old","author":"vendor",
		"timestamp":"2099-02-01T00:00:00Z","version":1,"statements":[{"vulnerability":{"name":"DEBIAN-CVE-2099-0003"},
		"products":[{"@id":"pkg:oci/api@IMAGE"}],"status":"affected","action_statement":"upgrade zlib"}]}`
	vexDocFixedSameTime = `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/zlib-vendor","author":"vendor",
		"timestamp":"2099-03-01T00:00:00Z","version":1,"statements":[{"vulnerability":{"name":"CVE-2099-0003"},
		"products":[{"@id":"pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1"}],"status":"under_investigation"}]}`
)

func vexDoc(t *testing.T, name, doc, image string) VEXDocument {
	t.Helper()
	parsed := must(ParseVEX([]byte(strings.ReplaceAll(doc, "IMAGE", strings.Replace(image, ":", "%3A", 1)))))(t)
	return VEXDocument{Name: name, Issuer: parsed.Author, Doc: parsed}
}

func TestVEXSuppressesAndResolvesConflicts(t *testing.T) {
	f := setUp(t)
	inv := must(f.cataloguer.Inventory(t.Context(), remoteImage(t, f.debian)))(t)
	snap := snapshotOf(t, "DEBIAN-CVE-2099-0003", "DEBIAN-CVE-2099-0001")
	zlib := func(r *Report) v1alpha1.Finding {
		i := slices.IndexFunc(r.Findings, func(f v1alpha1.Finding) bool { return f.Package == "zlib1g" })
		if i < 0 {
			t.Fatalf("no zlib finding in %q", findingIDs(r))
		}
		return r.Findings[i]
	}

	notAffected := vexDoc(t, "zlib-not-affected", vexDocNotAffected, inv.Image)
	r := Evaluate(inv, snap, []VEXDocument{notAffected}, nil)
	if v := zlib(r).VEX; v == nil || v.Status != v1alpha1.VEXNotAffected || v.Justification != "vulnerable_code_not_in_execute_path" || v.Statement != "zlib-not-affected" || v.Conflict != "" {
		t.Errorf("a not_affected statement: %+v", v)
	}
	if r.Summary.Low != 0 || r.Summary.Suppressed != 1 || r.Summary.Critical != 1 {
		t.Errorf("counts after VEX: %+v", r.Summary)
	}
	if v := r.Findings[0].VEX; v != nil {
		t.Errorf("VEX for zlib applied to openssl: %+v", v)
	}

	// An older statement that disagrees loses to the latest, and says so.
	older := vexDoc(t, "zlib-affected", vexDocAffectedOlder, inv.Image)
	r = Evaluate(inv, snap, []VEXDocument{older, notAffected}, nil)
	if v := zlib(r).VEX; v.Status != v1alpha1.VEXNotAffected || !strings.Contains(v.Conflict, "zlib-affected (vendor, 2099-02-01T00:00:00Z) says affected") {
		t.Errorf("a conflict: %+v", v)
	}

	// At the same time, the issuer trusted more wins, in either order.
	sameTime := vexDoc(t, "zlib-vendor", vexDocFixedSameTime, inv.Image)
	for _, trust := range [][]string{{"vendor", "platform-security"}, {"platform-security", "vendor"}} {
		for _, docs := range [][]VEXDocument{{notAffected, sameTime}, {sameTime, notAffected}} {
			v := zlib(Evaluate(inv, snap, docs, trust)).VEX
			if wantWinner := map[string]string{"vendor": "zlib-vendor", "platform-security": "zlib-not-affected"}[trust[0]]; v.Statement != wantWinner || v.Conflict == "" {
				t.Errorf("trust %q, documents %s first: %+v", trust, docs[0].Name, v)
			}
		}
	}

	// A statement about another image does not apply.
	other := vexDoc(t, "other", vexDocNotAffected, "sha256:"+strings.Repeat("0", 64))
	if v := zlib(Evaluate(inv, snap, []VEXDocument{other}, nil)).VEX; v != nil {
		t.Errorf("a statement about another image applied: %+v", v)
	}
}

func TestParseVEXRefusesBadDocuments(t *testing.T) {
	base := func(statement string) string {
		return `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"x","author":"a","timestamp":"2099-01-01T00:00:00Z","version":1,"statements":[` + statement + `]}`
	}
	for _, c := range []struct{ doc, want string }{
		{`{`, "not an OpenVEX JSON document"},
		{`{"@context":"https://example.com","statements":[]}`, `@context "https://example.com"`},
		{base(`{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:npm/x"}],"status":"maybe"}`), `statements[0].status "maybe": use one of not_affected, affected, fixed, under_investigation`},
		{base(`{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:npm/x"}],"status":"not_affected"}`), "statements[0]: a not_affected statement needs a justification"},
		{base(`{"vulnerability":{},"products":[{"@id":"pkg:npm/x"}],"status":"fixed"}`), "statements[0].vulnerability.name"},
		{base(`{"vulnerability":{"name":"CVE-1"},"status":"fixed"}`), "statements[0].products"},
	} {
		if _, err := ParseVEX([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.doc, err, c.want)
		}
	}
}

func TestReportAndSBOMAreDeterministic(t *testing.T) {
	f := setUp(t)
	inv := must(f.cataloguer.Inventory(t.Context(), remoteImage(t, f.debian)))(t)
	snap := snapshotOf(t, allAdvisories()...)
	ids := allAdvisories()
	slices.Reverse(ids)
	reversed := snapshotOf(t, ids...)
	a, b := Evaluate(inv, snap, nil, nil), Evaluate(inv, reversed, nil, nil)
	if a.Digest() != b.Digest() || !bytes.Equal(a.Canonical(), b.Canonical()) {
		t.Error("the same inventory and advisories made two reports")
	}
	if a.AdvisorySnapshot != snap.Digest || snap.Digest != reversed.Digest {
		t.Errorf("snapshot digests %s, %s", snap.Digest, reversed.Digest)
	}

	sbom := must(SBOM(inv, f.debian))(t)
	uncached := must(must(NewCataloguer("", 1))(t).Inventory(t.Context(), remoteImage(t, f.debian)))(t)
	again := must(SBOM(uncached, f.debian))(t)
	if !bytes.Equal(sbom, again) {
		t.Error("two SBOMs of one image differ")
	}
	var bom cdx.BOM
	if err := json.Unmarshal(sbom, &bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_6 || bom.Metadata.Component.Type != cdx.ComponentTypeContainer || len(*bom.Components) != len(inv.Packages) {
		t.Errorf("SBOM: spec %s, %d components for %d packages", bom.SpecVersion, len(*bom.Components), len(inv.Packages))
	}
	if !strings.Contains(string(sbom), `"purl":"pkg:deb/debian/libssl3@3.0.11-1~deb12u1?distro=debian-12\u0026upstream=openssl"`) {
		t.Errorf("SBOM without the libssl3 purl: %.600s", sbom)
	}
}

func TestAdvisoryStore(t *testing.T) {
	dir := t.TempDir()
	store := must(OpenAdvisoryStore(filepath.Join(dir, "advisories")))(t)
	if _, err := store.Active(); err != ErrNoSnapshot {
		t.Fatalf("an empty store: %v", err)
	}
	files := filepath.Join(dir, "osv")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"DEBIAN-CVE-2099-0001", "GHSA-2099-0007"} {
		if err := os.WriteFile(filepath.Join(files, id+".json"), []byte(advisories[id]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docs := must(ReadDocuments(files))(t)
	first := must(NewSnapshot(docs))(t)
	info, activated, err := store.Import(first, files, time.Unix(1704067200, 0))
	if err != nil || !activated || info.Documents != 2 || info.Digest != first.Digest {
		t.Fatalf("first import: %+v %v %v", info, activated, err)
	}
	if _, activated, _ := store.Import(first, "again", time.Now()); activated {
		t.Error("importing the same content again changed the store")
	}

	if err := os.WriteFile(filepath.Join(files, "GO-2099-0006.json"), []byte(advisories["GO-2099-0006"]), 0o644); err != nil {
		t.Fatal(err)
	}
	second := must(NewSnapshot(must(ReadDocuments(files))(t)))(t)
	if _, activated, err := store.Import(second, files, time.Now()); err != nil || !activated {
		t.Fatalf("new content: %v %v", activated, err)
	}
	// A fresh store reads the active snapshot from disk, checking it.
	reopened := must(OpenAdvisoryStore(filepath.Join(dir, "advisories")))(t)
	if active := must(reopened.Active())(t); active.Digest != second.Digest || len(active.Documents) != 3 {
		t.Errorf("active after the second import: %s with %d documents", active.Digest, len(active.Documents))
	}
	list := must(reopened.List())(t)
	if len(list) != 2 || !list[0].Active || list[1].Source != files || list[1].ImportedAt.Unix() != 1704067200 {
		t.Errorf("snapshots: %+v", list)
	}

	// A file that is not OSV is refused, naming it; the store is unchanged.
	if err := os.WriteFile(filepath.Join(files, "broken.json"), []byte(`{"id":"X-1","modified":"2099-01-01T00:00:00Z","affected":[{"package":{"name":"x"}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDocuments(files); err == nil || !strings.Contains(err.Error(), "broken.json: advisory X-1: affected[0].package") {
		t.Errorf("an invalid document: %v", err)
	}

	// A document changed on disk is found when the snapshot is read.
	stored := filepath.Join(dir, "advisories", "snapshots", strings.TrimPrefix(second.Digest, "sha256:")+".zip")
	forged := must(NewSnapshot([]Document{
		{Raw: []byte(advisories["DEBIAN-CVE-2099-0001"]), Advisory: must(ParseAdvisory([]byte(advisories["DEBIAN-CVE-2099-0001"])))(t)},
		{Raw: []byte(advisories["GO-2099-0006"]), Advisory: must(ParseAdvisory([]byte(advisories["GO-2099-0006"])))(t)},
		{Raw: []byte(strings.Replace(advisories["GHSA-2099-0007"], "4.17.21", "4.17.20", 1)), Advisory: must(ParseAdvisory([]byte(advisories["GHSA-2099-0007"])))(t)},
	}))(t)
	var buf bytes.Buffer
	if err := forged.WriteZip(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stored, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := must(OpenAdvisoryStore(filepath.Join(dir, "advisories")))(t).Active(); err == nil || !strings.Contains(err.Error(), "the store was changed") {
		t.Errorf("a tampered document: %v", err)
	}
}

func TestScannerReadsLayoutsAndKeepsToItsRegistries(t *testing.T) {
	f := setUp(t)
	layoutDir := t.TempDir()
	img := remoteImage(t, f.alpine)
	p := must(layout.Write(layoutDir, empty.Index))(t)
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	scanner := must(Open(Options{Dir: t.TempDir(), Parallel: 1, Registries: []string{"registry.internal"}, Layouts: []string{layoutDir}}))(t)

	// In the layout: read from there, the registry is not asked.
	inv := must(scanner.Inventory(t.Context(), f.alpine))(t)
	if len(inv.Packages) != 2 || inv.OS.ID != "alpine" {
		t.Errorf("from the OCI layout: %+v", inv)
	}
	// Elsewhere: refused by --scan-registries, without a request.
	_, err := scanner.Inventory(t.Context(), f.debian)
	if err == nil || !strings.Contains(err.Error(), "--scan-registries") || !strings.Contains(err.Error(), "registry.internal") {
		t.Errorf("an image outside the allowed registries: %v", err)
	}

	// A digest the registry does not hold.
	open := must(Open(Options{Dir: t.TempDir(), Parallel: 1}))(t)
	missing := f.registry.Host + "/shop/api@sha256:" + strings.Repeat("0", 64)
	if _, err := open.Inventory(t.Context(), missing); err == nil || !strings.Contains(err.Error(), "read image "+missing) || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("an image the registry does not hold: %v", err)
	}
	if _, err := open.Inventory(t.Context(), "shop/api:latest"); err == nil || !strings.Contains(err.Error(), "not an image reference pinned by digest") {
		t.Errorf("a tag: %v", err)
	}
}

func TestScannerKeepsAMultiPlatformImageUnderItsIndexDigest(t *testing.T) {
	f := setUp(t)
	img := remoteImage(t, f.alpine)
	index := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	ref := must(name.NewTag(f.registry.Host + "/shop/multi:1"))(t)
	if err := remote.WriteIndex(ref, index); err != nil {
		t.Fatal(err)
	}
	indexDigest := must(index.Digest())(t).String()
	byIndex := f.registry.Host + "/shop/multi@" + indexDigest
	scanner := must(Open(Options{Dir: t.TempDir(), Parallel: 1}))(t)
	inv := must(scanner.Inventory(t.Context(), byIndex))(t)
	_, cached := scanner.Cataloguer.Cached(indexDigest)
	if inv.Image != indexDigest || len(inv.Packages) != 2 || !cached {
		t.Errorf("a multi-platform image: %s with %d packages, cached %v", inv.Image, len(inv.Packages), cached)
	}

	layoutDir := t.TempDir()
	if _, err := layout.Write(layoutDir, index); err != nil {
		t.Fatal(err)
	}
	offline := must(Open(Options{Dir: t.TempDir(), Parallel: 1, Registries: []string{"none.invalid"}, Layouts: []string{layoutDir}}))(t)
	if inv := must(offline.Inventory(t.Context(), byIndex))(t); inv.Image != indexDigest || len(inv.Packages) != 2 {
		t.Errorf("a multi-platform image from an OCI layout: %+v", inv)
	}
}

func TestAdvisoryHandler(t *testing.T) {
	scanner := must(Open(Options{Dir: t.TempDir(), Parallel: 1}))(t)
	srv := httptest.NewServer(scanner.Handler())
	defer srv.Close()
	call := func(method, path string, body []byte) (int, string) {
		t.Helper()
		req := must(http.NewRequestWithContext(t.Context(), method, srv.URL+PathPrefix+path, bytes.NewReader(body)))(t)
		res := must(http.DefaultClient.Do(req))(t)
		defer res.Body.Close()
		return res.StatusCode, string(must(io.ReadAll(res.Body))(t))
	}
	zipOf := func(docs ...string) []byte {
		var buf bytes.Buffer
		z := zip.NewWriter(&buf)
		for i, d := range docs {
			w := must(z.Create(fmt.Sprintf("doc-%d.json", i)))(t)
			_, _ = w.Write([]byte(d))
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}

	if code, body := call(http.MethodGet, PathSnapshots+"/active", nil); code != http.StatusNotFound || !strings.Contains(body, "stellactl advisories import") {
		t.Errorf("no snapshot yet: %d %s", code, body)
	}
	if code, body := call(http.MethodGet, PathSnapshots+"/..%2F..%2Fetc%2Fpasswd", nil); code != http.StatusBadRequest {
		t.Errorf("a path for a digest: %d %s", code, body)
	}
	if code, body := call(http.MethodPost, PathSnapshots+"?source=feed", zipOf(advisories["GO-2099-0006"], `{"id":"X-1","modified":"now"}`)); code != http.StatusBadRequest || !strings.Contains(body, `doc-1.json: advisory X-1: modified "now"`) {
		t.Errorf("an invalid document: %d %s", code, body)
	}
	if code, body := call(http.MethodPost, PathSnapshots, zipOf(advisories["GO-2099-0006"])); code != http.StatusBadRequest || !strings.Contains(body, "?source=") {
		t.Errorf("no source: %d %s", code, body)
	}
	code, body := call(http.MethodPost, PathSnapshots+"?source=feed", zipOf(advisories["GO-2099-0006"]))
	var result ImportResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &result) != nil || !result.Activated || result.Snapshot.Source != "feed" {
		t.Fatalf("an import: %d %s", code, body)
	}
	code, body = call(http.MethodGet, PathSnapshots+"/active", nil)
	z := must(zip.NewReader(strings.NewReader(body), int64(len(body))))(t)
	if code != http.StatusOK || len(z.File) != 1 || z.File[0].Name != "GO-2099-0006.json" {
		t.Errorf("the active snapshot as a zip: %d, %d files", code, len(z.File))
	}
}

// rpmDatabase is an rpmdb.sqlite holding one package, written by rpm itself:
// rpmbuild makes the package, rpm -i --justdb records it.
func rpmDatabase(t *testing.T, name, epoch, version, release string) []byte {
	t.Helper()
	if _, err := exec.LookPath("rpmbuild"); err != nil {
		if os.Getenv("STELLA_REQUIRE_RPM") != "" {
			t.Fatal("STELLA_REQUIRE_RPM is set but rpmbuild is missing: apt-get install rpm")
		}
		t.Skip("rpm is not installed (apt-get install rpm): skipping the RPM database test")
	}
	dir := t.TempDir()
	spec := filepath.Join(dir, "test.spec")
	if err := os.WriteFile(spec, fmt.Appendf(nil, "Name: %s\nEpoch: %s\nVersion: %s\nRelease: %s\nSummary: test\nLicense: MIT\nBuildArch: noarch\n%%description\nA package for Stella's scanner tests.\n%%files\n",
		name, epoch, version, release), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"rpmbuild", "-bb", "--define", "_topdir " + filepath.Join(dir, "top"), spec},
		{"rpm", "--initdb", "--dbpath", filepath.Join(dir, "db")},
	} {
		if out, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	pkg := filepath.Join(dir, "top", "RPMS", "noarch", fmt.Sprintf("%s-%s-%s.noarch.rpm", name, version, release))
	if out, err := exec.CommandContext(t.Context(), "rpm", "-i", "--justdb", "--nodeps", "--noscripts", "--notriggers", "--dbpath", filepath.Join(dir, "db"), pkg).CombinedOutput(); err != nil {
		t.Fatalf("rpm -i: %v\n%s", err, out)
	}
	return must(os.ReadFile(filepath.Join(dir, "db", "rpmdb.sqlite")))(t)
}

func TestScanReadsAnRPMDatabase(t *testing.T) {
	f := setUp(t)
	ref := f.push(t, "shop/alma", must(images.Layer(
		images.File{Name: "etc/os-release", Body: []byte("NAME=\"AlmaLinux\"\nID=\"almalinux\"\nVERSION_ID=\"9.3\"\n")},
		images.File{Name: "var/lib/rpm/rpmdb.sqlite", Body: rpmDatabase(t, "openssl-libs", "1", "3.0.7", "24.el9")},
	))(t))
	inv := must(f.cataloguer.Inventory(t.Context(), remoteImage(t, ref)))(t)
	if len(inv.Packages) != 1 || inv.Packages[0].Ecosystem != "AlmaLinux:9" || inv.Packages[0].Version != "1:3.0.7-24.el9" {
		t.Fatalf("the RPM database: %+v", inv.Packages)
	}
	if purl := inv.Packages[0].PURL(); purl != "pkg:rpm/almalinux/openssl-libs@1:3.0.7-24.el9?distro=almalinux-9.3" {
		t.Errorf("purl %s", purl)
	}
	doc := func(id, ecosystem, fixed string) Document {
		raw := fmt.Sprintf(`{"id":%q,"modified":"2099-01-01T00:00:00Z","affected":[{"package":{"ecosystem":%q,"name":"openssl-libs"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":%q}]}]}]}`, id, ecosystem, fixed)
		return Document{Raw: []byte(raw), Advisory: must(ParseAdvisory([]byte(raw)))(t)}
	}
	snap := must(NewSnapshot([]Document{
		doc("ALSA-2099:0001", "AlmaLinux:9", "1:3.0.7-25.el9"),                        // a later release fixes it
		doc("ALSA-2099:0002", "AlmaLinux:9", "1:3.0.7-24.el9"),                        // the installed one is the fix
		doc("ALSA-2099:0003", "AlmaLinux:9", "3.0.8-1.el9"),                           // no epoch: older than 1:3.0.7
		doc("ALSA-2099:0004", "AlmaLinux:8", "1:3.0.7-30.el8"),                        // another release
		doc("RHSA-2099:0005", "Red Hat:enterprise_linux:9::baseos", "1:3.0.7-30.el9"), // another distribution
	}))(t)
	if got := findingIDs(Evaluate(inv, snap, nil, nil)); !slices.Equal(got, []string{"ALSA-2099:0001 openssl-libs 1:3.0.7-24.el9"}) {
		t.Errorf("RPM findings %q", got)
	}
}
