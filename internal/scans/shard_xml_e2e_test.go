package scans_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/nmap-mcp/nmap-mcp/internal/results"
	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// The merged scan://ID/xml of a sharded scan is read by nmap's own XML
// tools as nmap's own output is: nmap's stylesheet (nmap.xsl) renders it
// with xsltproc, without error, listing every host and port; it is valid
// against nmap's DTD (nmap.dtd) exactly when the unsharded run's XML is;
// and the project's decoder reads it whole, with the unsharded run's
// hosts, ports, states and host counts. nmap.xsl and nmap.dtd are copied
// out of the scanner image through a container that is never started, has
// no network and is removed after; xsltproc and xmllint run on the host
// (nmap never does: the image has neither tool, nor ndiff). (Real engine;
// targets: listeners the test opens on 127.0.0.0/29.)
func TestShardedXMLReadByNmapTools(t *testing.T) {
	testkit.NeedEngine(t)
	tools := map[string]string{}
	for _, tool := range []string{"xsltproc", "xmllint"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; scripts/test.sh installs it (apt-get install xsltproc libxml2-utils)", tool)
			}
			t.Skipf("needs %s: run scripts/test.sh, which installs it, or apt-get install xsltproc libxml2-utils", tool)
		}
		tools[tool] = path
	}
	port := testkit.TCPListener(t) // on 127.0.0.1
	listenOn(t, port, "127.0.0.2", "127.0.0.5", "127.0.0.7")
	dir := t.TempDir()
	xsl, dtd := filepath.Join(dir, "nmap.xsl"), filepath.Join(dir, "nmap.dtd")
	copyFromImage(t, map[string]string{"/usr/share/nmap/nmap.xsl": xsl, "/usr/share/nmap/nmap.dtd": dtd})

	svc := newShardedService(t, nil, shard.Config{Threshold: 4, Shards: 4})
	req := scanargs.Request{Targets: "127.0.0.0/29", Ports: fmt.Sprint(port), SkipHostDiscovery: true}
	whole := req
	whole.Shards = intp(1)
	xmlOf := func(name string, r scanargs.Request, shards int) (string, []byte) {
		rec, err := runScan(t, svc, r)
		if err != nil {
			t.Fatalf("%s scan: %v", name, err)
		}
		if len(rec.Limits.Shards) != shards {
			t.Fatalf("%s scan: shards %v, want %d", name, rec.Limits.Shards, shards)
		}
		x, err := svc.RawXML(context.Background(), rec.ID)
		if err != nil {
			t.Fatalf("%s scan: scan://%s/xml: %v", name, rec.ID, err)
		}
		path := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(path, x, 0o600); err != nil {
			t.Fatal(err)
		}
		return path, x
	}
	wholePath, wholeXML := xmlOf("whole", whole, 0)
	mergedPath, mergedXML := xmlOf("merged", req, 4)

	// The project's decoder: the merged document whole and complete, the
	// same hosts, ports and states as one nmap's, and the same counts.
	decode := func(name string, x []byte) *results.Result {
		res, err := results.Decode(bytes.NewReader(x), results.Handlers{})
		if err != nil || res.Partial {
			t.Fatalf("decode the %s XML: %v (partial %v)\n%s", name, err, res.Partial, x)
		}
		return res
	}
	w, m := decode("whole", wholeXML), decode("merged", mergedXML)
	if ws, ms := hostPorts(w), hostPorts(m); !slices.Equal(ws, ms) || len(ms) != 8 {
		t.Fatalf("merged hosts and ports %v\nwant (unsharded) %v", ms, ws)
	}
	if m.Stats.HostsUp != w.Stats.HostsUp || m.Stats.HostsTotal != w.Stats.HostsTotal || m.Stats.HostsDown != w.Stats.HostsDown ||
		m.Stats.Exit != "success" || m.Args != w.Args || m.NmapVersion != w.NmapVersion {
		t.Fatalf("merged run: stats %+v, args %q, version %q\nwant (unsharded) stats %+v, args %q, version %q",
			m.Stats, m.Args, m.NmapVersion, w.Stats, w.Args, w.NmapVersion)
	}

	// The merged document points at nmap.xsl as nmap's own does.
	pi := func(x []byte) string {
		i := bytes.Index(x, []byte("<?xml-stylesheet "))
		if i < 0 {
			return ""
		}
		return string(x[i : i+bytes.IndexByte(x[i:], '\n')])
	}
	if wp, mp := pi(wholeXML), pi(mergedXML); wp == "" || mp != wp {
		t.Errorf("stylesheet instruction %q, want nmap's own %q", mp, wp)
	}

	// nmap.xsl renders both without a word on stderr, and the merged page
	// lists every host with its port's state.
	render := func(name, path string) string {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(tools["xsltproc"], "--nonet", "--novalid", xsl, path)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("xsltproc nmap.xsl %s.xml: %v\n%s", name, err, stderr.String())
		}
		return stdout.String()
	}
	wholeHTML, mergedHTML := render("whole", wholePath), render("merged", mergedPath)
	for _, h := range m.Hosts {
		for _, p := range h.Ports {
			for _, want := range []string{">" + h.Addresses[0] + "<", fmt.Sprintf(">%d<", p.Port), ">" + p.State + "<"} {
				if !strings.Contains(mergedHTML, want) {
					t.Errorf("nmap.xsl's page of the merged XML lacks %q (host %s)", want, h.Addresses[0])
				}
			}
		}
	}
	if wc, mc := strings.Count(wholeHTML, "<h2 class=\"up\""), strings.Count(mergedHTML, "<h2 class=\"up\""); wc != mc || mc != 8 {
		t.Errorf("nmap.xsl's pages list %d hosts up (merged) and %d (unsharded), want 8", mc, wc)
	}

	// nmap.dtd: the merged XML is as valid as nmap's own.
	validate := func(path string) string {
		out, err := exec.Command(tools["xmllint"], "--noout", "--nonet", "--dtdvalid", dtd, path).CombinedOutput()
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("xmllint: %v", err)
			}
			return strings.ReplaceAll(string(out), path, "FILE")
		}
		return ""
	}
	if wv, mv := validate(wholePath), validate(mergedPath); mv != "" {
		if wv == "" {
			t.Errorf("the merged XML is not valid against nmap.dtd, the unsharded one is:\n%s", mv)
		} else {
			t.Logf("nmap.dtd rejects nmap's own XML too:\n%s\nmerged:\n%s", wv, mv)
		}
	}
}

// hostPorts lists "address state port/proto state" of a decoded result,
// sorted.
func hostPorts(r *results.Result) []string {
	var out []string
	for _, h := range r.Hosts {
		for _, p := range h.Ports {
			out = append(out, fmt.Sprintf("%s %s %d/%s %s", h.Addresses[0], h.State, p.Port, p.Protocol, p.State))
		}
	}
	slices.Sort(out)
	return out
}

// copyFromImage copies files (image path -> host path) out of the scanner
// image through a container that is created, never started, has no
// network, and is removed before it returns.
func copyFromImage(t *testing.T, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	created, err := env.Client.ContainerCreate(ctx,
		&container.Config{Image: env.Image.ID, Entrypoint: []string{"/bin/true"}, NetworkDisabled: true,
			Labels: map[string]string{sandbox.LabelManaged: "true", sandbox.LabelInstance: env.Instance}},
		&container.HostConfig{NetworkMode: "none", CapDrop: []string{"ALL"}, ReadonlyRootfs: true}, nil, nil, "")
	if err != nil {
		t.Fatalf("create a container of the scanner image: %v", err)
	}
	defer func() {
		if err := env.Client.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove the copy container: %v", err)
		}
	}()
	for from, to := range files {
		rc, _, err := env.Client.CopyFromContainer(ctx, created.ID, from)
		if err != nil {
			t.Fatalf("copy %s out of the scanner image: %v", from, err)
		}
		tr := tar.NewReader(rc)
		h, err := tr.Next()
		if err != nil || h.Typeflag != tar.TypeReg {
			rc.Close()
			t.Fatalf("copy %s out of the scanner image: not a file (%v)", from, err)
		}
		b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		rc.Close()
		if err != nil {
			t.Fatalf("copy %s out of the scanner image: %v", from, err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
