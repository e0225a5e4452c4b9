package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/framework"
	"github.com/stella-ops/stella/test/images"
)

// A Debian 12 image with OpenSSL 3.0.11-1~deb12u1 installed, and an OSV
// advisory that it fixes in ~deb12u2.
const (
	scanDpkgStatus  = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n"
	opensslAdvisory = `{"id":"DEBIAN-CVE-2099-1000","modified":"2099-01-01T00:00:00Z","aliases":["CVE-2099-1000"],
  "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]}]}`
	stdlibAdvisory = `{"id":"GO-2099-1001","modified":"2099-01-01T00:00:00Z","database_specific":{"severity":"CRITICAL"},
  "affected":[{"package":{"ecosystem":"Go","name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"99.0.0"}]}]}]}`
)

var _ = Describe("Scanning release images", Ordered, func() {
	var (
		srv        *framework.Server
		admin      client.Client
		ns         string
		registry   *images.Registry
		imageRef   string
		advisories string
		report     client.ObjectKey
	)

	scanReport := func(ctx context.Context) *v1alpha1.ScanReport {
		r := &v1alpha1.ScanReport{}
		if err := admin.Get(ctx, report, r); err != nil {
			return nil
		}
		return r
	}
	writeAdvisory := func(name, doc string) {
		Expect(os.WriteFile(filepath.Join(advisories, name), []byte(doc), 0o644)).To(Succeed())
	}

	BeforeAll(func(ctx SpecContext) {
		srv = startServer(framework.ServerOptions{Args: []string{"--scan-registries", "127.0.0.1", "--vex-trust", "platform-security"}})
		admin = srv.AdminClient()
		ns = newNamespace(ctx, admin)
		var err error
		registry, err = images.StartRegistry()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(registry.Close)
		program, err := images.Program(ctx)
		Expect(err).NotTo(HaveOccurred())
		base, err := images.Layer(
			images.File{Name: "usr/lib/os-release", Body: []byte("ID=debian\nVERSION_ID=\"12\"\n")},
			images.File{Name: "etc/os-release", Typeflag: tar.TypeSymlink, Linkname: "../usr/lib/os-release"},
			images.File{Name: "var/lib/dpkg/status", Body: []byte(scanDpkgStatus)},
		)
		Expect(err).NotTo(HaveOccurred())
		app, err := images.Layer(images.File{Name: "usr/local/bin/api", Mode: 0o755, Body: program})
		Expect(err).NotTo(HaveOccurred())
		img, err := mutate.AppendLayers(empty.Image, base, app)
		Expect(err).NotTo(HaveOccurred())
		imageRef, err = registry.Push("shop/api", "1.0.0", img)
		Expect(err).NotTo(HaveOccurred())
		advisories = GinkgoT().TempDir()
		writeAdvisory("openssl.json", opensslAdvisory)
	})

	It("keeps a report for each image of a release, with its packages, before any advisory is imported", func(ctx SpecContext) {
		Expect(admin.Create(ctx, &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-1"},
			Spec: v1alpha1.ReleaseSpec{Version: "1.0.0", Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: v1alpha1.ImageDigestRef(imageRef)}}}})).To(Succeed())
		report = client.ObjectKey{Namespace: ns, Name: v1alpha1.ScanReportName(v1alpha1.ImageDigestRef(imageRef).Digest())}
		Eventually(func(g Gomega) {
			r := scanReport(ctx)
			g.Expect(r).NotTo(BeNil())
			g.Expect(r.Labels).To(HaveKeyWithValue(v1alpha1.LabelScannedBy, "stella"))
			c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReconciling)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal("NoAdvisories"))
			g.Expect(c.Message).To(ContainSubstring("stellactl advisories import"))
			g.Expect(r.Status.Packages).To(BeNumerically(">=", 3)) // libssl3, the Go toolchain, the module
			g.Expect(string(r.Status.SBOMDigest)).To(HavePrefix("sha256:"))
			g.Expect(r.Status.ScannedAt).To(BeNil(), "without advisories a report has no verdict for the gates")
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Succeed())
	})

	It("matches the image against imported advisories, and says so on the release", func(ctx SpecContext) {
		out, err := stellactl(ctx, srv.Kubeconfig(), "advisories", "import", advisories, "--source", "e2e-feed")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`advisory snapshot sha256:[0-9a-f]{64} \(1 advisories\) imported`))
		Eventually(func(g Gomega) {
			r := scanReport(ctx)
			g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
			g.Expect(r.Status.MaxSeverity).To(Equal(v1alpha1.SeverityCritical))
			g.Expect(r.Status.Findings).To(ContainElement(And(
				HaveField("Advisory", "DEBIAN-CVE-2099-1000"), HaveField("Package", "libssl3"), HaveField("FixedIn", "3.0.11-1~deb12u2"))))
			g.Expect(string(r.Status.ReportDigest)).To(HavePrefix("sha256:"))
			g.Expect(r.Status.ScannedAt).NotTo(BeNil())
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			rel := &v1alpha1.Release{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-1"}, rel)).To(Succeed())
			g.Expect(rel.Status.Components).To(ConsistOf(v1alpha1.ReleaseComponentStatus{Name: "api", ScanReport: report.Name, MaxSeverity: v1alpha1.SeverityCritical}))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())

		out, err = stellactl(ctx, srv.Kubeconfig(), "advisories", "import", advisories, "--source", "e2e-feed")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("unchanged: already active"))

		out, err = stellactl(ctx, srv.Kubeconfig(), "describe", "scanreport", report.Name, "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("DEBIAN-CVE-2099-1000"))
		Expect(out).To(MatchRegexp(`Max Severity:\s+Critical`))
	})

	It("suppresses a finding that a VEX statement marks not_affected, and says why", func(ctx SpecContext) {
		doc := `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1","author":"platform-security",
			"timestamp":"2099-03-01T00:00:00Z","version":1,"statements":[{"vulnerability":{"name":"CVE-2099-1000"},
			"products":[{"@id":"pkg:oci/api@` + strings.Replace(v1alpha1.ImageDigestRef(imageRef).Digest(), ":", "%3A", 1) + `"}],
			"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`
		Expect(admin.Create(ctx, &v1alpha1.VEXStatement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openssl-unused"},
			Spec: v1alpha1.VEXStatementSpec{Document: doc}})).To(Succeed())
		Eventually(func(g Gomega) {
			r := scanReport(ctx)
			g.Expect(r.Status.Summary.Suppressed).To(BeEquivalentTo(1))
			g.Expect(r.Status.MaxSeverity).NotTo(Equal(v1alpha1.SeverityCritical))
			g.Expect(r.Status.Findings).To(ContainElement(HaveField("VEX", HaveValue(And(
				HaveField("Status", v1alpha1.VEXNotAffected), HaveField("Justification", "vulnerable_code_not_in_execute_path"),
				HaveField("Statement", "openssl-unused"))))))
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Succeed())

		By("refusing a document with an unknown status, naming the field")
		Expect(admin.Create(ctx, &v1alpha1.VEXStatement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "typo"},
			Spec: v1alpha1.VEXStatementSpec{Document: strings.Replace(doc, `"not_affected"`, `"not-affected"`, 1)}})).To(Succeed())
		Eventually(func() string {
			s := &v1alpha1.VEXStatement{}
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "typo"}, s)
			return conditionMessage(s.Status.Conditions, v1alpha1.ConditionStalled)
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(ContainSubstring(`spec.document: statements[0].status "not-affected"`))
	})

	It("lets the release into an environment guarded by a securityVerdict gate, once VEX cleared it", func(ctx SpecContext) {
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-criticals"},
			Spec: v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{MaxSeverity: v1alpha1.SeverityHigh}}})).To(Succeed())
		env := environment(ns, "prod")
		env.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "no-criticals"}}
		Expect(admin.Create(ctx, env)).To(Succeed())
		promo := generated(promotion(ns, "", "shop-1", "prod"))
		Expect(admin.Create(ctx, promo)).To(Succeed())
		reachesPhaseOn(ctx, admin, promo, v1alpha1.PromotionSucceeded)
		Eventually(func(g Gomega) {
			got := &v1alpha1.Environment{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSecurityVerdict)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("matches every report again on a new snapshot, from the packages it keeps, without the registry", func(ctx SpecContext) {
		before := scanReport(ctx).Status.ReportDigest
		Expect(registry.Close()).To(Succeed())
		writeAdvisory("stdlib.json", stdlibAdvisory)
		out, err := stellactl(ctx, srv.Kubeconfig(), "advisories", "import", advisories, "--source", "e2e-feed")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			r := scanReport(ctx)
			g.Expect(r.Status.ReportDigest).NotTo(Equal(before))
			g.Expect(r.Status.Findings).To(ContainElement(HaveField("Advisory", "GO-2099-1001")))
			g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Succeed())

		By("saying on the environment that the release it runs fails its gate now")
		Eventually(func(g Gomega) {
			got := &v1alpha1.Environment{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSecurityVerdict)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Message).To(ContainSubstring("shop-1, running here: gate no-criticals:"))
			g.Expect(c.Message).To(ContainSubstring("GO-2099-1001"))
			var events corev1.EventList
			g.Expect(admin.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(HaveField("Reason", "SecurityVerdictFailed"), HaveField("InvolvedObject.Name", "prod"))))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("refuses advisories that are not OSV, keeping the active snapshot", func(ctx SpecContext) {
		listBefore, err := stellactl(ctx, srv.Kubeconfig(), "advisories", "list")
		Expect(err).NotTo(HaveOccurred(), listBefore)
		writeAdvisory("broken.json", `{"id":"BROKEN-1","modified":"2099-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"x"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1"}]}]}]}`)
		out, err := stellactl(ctx, srv.Kubeconfig(), "advisories", "import", advisories)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("broken.json: advisory BROKEN-1: affected[0].ranges[0].events[0]: set exactly one of introduced, fixed, last_affected and limit"))
		listAfter, err := stellactl(ctx, srv.Kubeconfig(), "advisories", "list")
		Expect(err).NotTo(HaveOccurred(), listAfter)
		Expect(listAfter).To(Equal(listBefore))
		Expect(strings.Count(listAfter, "e2e-feed")).To(Equal(2), listAfter)
	})

	It("takes a snapshot imported into its scan directory by another process", func(ctx SpecContext) {
		feed := GinkgoT().TempDir()
		for name, doc := range map[string]string{"openssl.json": opensslAdvisory, "stdlib.json": stdlibAdvisory,
			"low.json": strings.Replace(strings.Replace(stdlibAdvisory, "GO-2099-1001", "GO-2099-1002", 1), "CRITICAL", "LOW", 1)} {
			Expect(os.WriteFile(filepath.Join(feed, name), []byte(doc), 0o644)).To(Succeed())
		}
		out, err := framework.Run(ctx, bin.Stella, nil, "advisories", "import", "--data-dir", srv.DataDir, feed, "--source", "offline-feed")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("(3 advisories) imported"))
		Eventually(func(g Gomega) {
			g.Expect(scanReport(ctx).Status.Findings).To(ContainElement(HaveField("Advisory", "GO-2099-1002")))
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Succeed())
	})

	It("makes a report deleted by hand again, from the cache", func(ctx SpecContext) {
		old := scanReport(ctx)
		Expect(admin.Delete(ctx, old)).To(Succeed())
		Eventually(func(g Gomega) {
			r := scanReport(ctx)
			g.Expect(r).NotTo(BeNil())
			g.Expect(r.UID).NotTo(Equal(old.UID))
			g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "matched again with the registry gone")
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Succeed())
	})

	It("says on the report when the image cannot be read", func(ctx SpecContext) {
		missing := "127.0.0.1:1/shop/gone@sha256:" + strings.Repeat("e", 64)
		Expect(admin.Create(ctx, &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-gone"},
			Spec: v1alpha1.ReleaseSpec{Version: "1.0.1", Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: v1alpha1.ImageDigestRef(missing)}}}})).To(Succeed())
		Eventually(func() string {
			r := &v1alpha1.ScanReport{}
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1alpha1.ScanReportName("sha256:" + strings.Repeat("e", 64))}, r)
			return conditionMessage(r.Status.Conditions, v1alpha1.ConditionReconciling)
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(ContainSubstring("read image " + missing))
	})
})

var _ = Describe("stellactl advisories import from a mirror", func() {
	It("downloads the file, checks its signature, and refuses one that does not verify", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{Args: []string{"--scan-registries", "127.0.0.1"}})
		var zipped bytes.Buffer
		z := zip.NewWriter(&zipped)
		w, err := z.Create("DEBIAN-CVE-2099-1000.json")
		Expect(err).NotTo(HaveOccurred())
		_, err = w.Write([]byte(opensslAdvisory))
		Expect(err).NotTo(HaveOccurred())
		Expect(z.Close()).To(Succeed())
		mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/osv/Debian/all.zip" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(zipped.Bytes())
		}))
		defer mirror.Close()

		dir := GinkgoT().TempDir()
		pub, priv, err := ed25519.GenerateKey(nil)
		Expect(err).NotTo(HaveOccurred())
		der, err := x509.MarshalPKIXPublicKey(pub)
		Expect(err).NotTo(HaveOccurred())
		key := filepath.Join(dir, "mirror.pub")
		Expect(os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)).To(Succeed())
		sig := filepath.Join(dir, "all.zip.sig")
		Expect(os.WriteFile(sig, []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, zipped.Bytes()))), 0o644)).To(Succeed())
		forged := filepath.Join(dir, "forged.sig")
		Expect(os.WriteFile(forged, []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte("other content")))), 0o644)).To(Succeed())

		url := mirror.URL + "/osv/Debian/all.zip"
		out, err := stellactl(ctx, srv.Kubeconfig(), "advisories", "import", url, "--signature", forged, "--key", key)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("the signature does not verify with " + key))
		out, err = stellactl(ctx, srv.Kubeconfig(), "advisories", "list")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).NotTo(ContainSubstring(url), "nothing was imported")

		out, err = stellactl(ctx, srv.Kubeconfig(), "advisories", "import", url, "--signature", sig, "--key", key)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("(1 advisories) imported"))
		out, err = stellactl(ctx, srv.Kubeconfig(), "advisories", "list")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(url))

		out, err = stellactl(ctx, srv.Kubeconfig(), "advisories", "import", mirror.URL+"/osv/Alpine/all.zip")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("404 Not Found"))
	})
})

var _ = Describe("stellactl scan", func() {
	It("scans one image on demand against local advisories, as a table, JSON or an SBOM", func(ctx SpecContext) {
		registry, err := images.StartRegistry()
		Expect(err).NotTo(HaveOccurred())
		defer registry.Close()
		base, err := images.Layer(
			images.File{Name: "etc/os-release", Body: []byte("ID=debian\nVERSION_ID=12\n")},
			images.File{Name: "var/lib/dpkg/status", Body: []byte(scanDpkgStatus)},
		)
		Expect(err).NotTo(HaveOccurred())
		img, err := mutate.AppendLayers(empty.Image, base)
		Expect(err).NotTo(HaveOccurred())
		_, err = registry.Push("shop/base", "12", img)
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "openssl.json"), []byte(opensslAdvisory), 0o644)).To(Succeed())
		tag := registry.Host + "/shop/base:12"
		cache := GinkgoT().TempDir()

		out, err := stellactlEnv(ctx, nil, "scan", tag, "--advisories", dir, "--cache-dir", cache)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("1 critical"))
		Expect(out).To(MatchRegexp(`Critical\s+DEBIAN-CVE-2099-1000 \(CVE-2099-1000\)\s+libssl3\s+3.0.11-1~deb12u1\s+3.0.11-1~deb12u2`))

		out, err = stellactlEnv(ctx, nil, "scan", tag, "--advisories", dir, "--cache-dir", cache, "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`"maxSeverity":"Critical"`))

		out, err = stellactlEnv(ctx, nil, "scan", tag, "--cache-dir", cache, "-o", "cyclonedx")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`"specVersion":"1.6"`))
		Expect(out).To(ContainSubstring(`pkg:deb/debian/libssl3@3.0.11-1~deb12u1`))

		out, err = stellactlEnv(ctx, nil, "scan", registry.Host+"/shop/missing:1", "--advisories", dir, "--cache-dir", cache)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("resolve " + registry.Host + "/shop/missing:1"))
	})
})
