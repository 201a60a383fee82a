package images_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/internal/testkit"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

var env *testkit.Env

func TestMain(m *testing.M) {
	os.Exit(testkit.Main(m, "images", func(e *testkit.Env) { env = e }))
}

func TestTagIsContentDerived(t *testing.T) {
	m := images.New(nil, nil, "")
	a, b := m.Tag("sha256:aaa"), m.Tag("sha256:bbb")
	if a == b || !strings.HasPrefix(a, images.Repository+":7.93-") {
		t.Fatalf("tags %q %q: want distinct, content-derived tags", a, b)
	}
	if m.Tag("sha256:aaa") != a {
		t.Fatal("tag is not deterministic")
	}
}

func TestImageCarriesExpectedLabels(t *testing.T) {
	testkit.NeedEngine(t)
	m := images.New(env.Client, nil, "")
	info, err := m.Current(context.Background())
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if info.NmapVersion != images.NmapVersion || info.RecipeSHA256 != m.RecipeSHA256() || info.ID == "" {
		t.Fatalf("info = %+v", info)
	}
	if info.Tag != env.Image.Tag {
		t.Fatalf("tag %s, test env uses %s", info.Tag, env.Image.Tag)
	}
}

func TestVerifyRefusesForeignImage(t *testing.T) {
	testkit.NeedEngine(t)
	m := images.New(env.Client, nil, "")
	// The base image exists but is not a scanner image: wrong labels.
	_, err := m.Verify(context.Background(), images.BaseRef)
	if err == nil || !strings.Contains(err.Error(), images.LabelRecipe) {
		t.Fatalf("Verify(base) = %v; want a label mismatch", err)
	}
	_, err = m.Verify(context.Background(), images.Repository+":no-such-tag")
	var me *images.MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "nmap-mcp image build") {
		t.Fatalf("Verify(missing) = %v; want *MissingError with the fix", err)
	}
}

// The image has no setuid or setgid files and runs nmap as uid 65532.
func TestImageHardening(t *testing.T) {
	testkit.NeedEngine(t)
	ex := executor.New(env.Client, nil)
	lim := sandbox.DefaultLimits()
	lim.Timeout = time.Minute
	run := func(script string) string {
		spec := sandbox.New(env.Options(lim), sandbox.Scan{ID: t.Name(), Image: env.Image.Tag, Placement: testkit.HostPlacement})
		spec.Command = []string{"/bin/sh", "-c", script}
		res, err := ex.Run(context.Background(), executor.Job{Spec: spec})
		if err != nil {
			t.Fatalf("%s: %v (%s)", script, err, res.Stderr)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	if out := run("find / -xdev -type f -perm /6000 2>/dev/null; true"); out != "" {
		t.Fatalf("setuid/setgid files in the image:\n%s", out)
	}
	if out := run("id -u; grep Cap[EP] /proc/self/status"); !strings.HasPrefix(out, "65532") ||
		!strings.Contains(out, "CapEff:\t0000000000000000") {
		t.Fatalf("unprivileged profile: %s", out)
	}
	if out := run("touch /etc/x 2>&1 || echo read-only"); !strings.Contains(out, "read-only") {
		t.Fatalf("root filesystem is writable: %s", out)
	}
}
