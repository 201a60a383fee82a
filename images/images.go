// Package images owns the pinned scanner image: its content-derived tag,
// building it from the embedded Dockerfile.nmap through the Engine API,
// verifying the labels of the image about to run, and, where no registry
// answers, making a Debian bookworm base offline (debootstrap, then import).
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	nmapmcp "github.com/nmap-mcp/nmap-mcp"
)

// Names and labels of the images this package makes.
const (
	// Repository holds the scanner images; tags are "7.93-<hash>".
	Repository = "nmap-mcp/nmap"
	// BaseRef is the offline-built Debian base.
	BaseRef = "nmap-mcp/debian-base:bookworm"
	// PinnedBase is Dockerfile.nmap's default base, pinned by digest, used
	// when it is present or can be pulled.
	PinnedBase = "debian:bookworm-slim@sha256:56ff6d36d4eb3db13a741b342ec466f121480b5edded42e4b7ee850ce7a418ee"
	// NmapVersion is the exact Debian package version installed.
	NmapVersion = "7.93+dfsg1-1"
	// NftablesVersion is the exact Debian nftables version installed, for
	// the network fence.
	NftablesVersion = "1.0.6-2+deb12u2"
	// LabelNmapVersion and LabelRecipe are set on the image by Dockerfile.nmap.
	LabelNmapVersion = "org.nmap-mcp.nmap-version"
	LabelRecipe      = "org.nmap-mcp.recipe-sha256"
	// DefaultMirror is the Debian mirror used to make the offline base.
	DefaultMirror = "http://deb.debian.org/debian"
)

// Engine is the part of the Docker client this package uses;
// *client.Client satisfies it.
type Engine interface {
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageBuild(ctx context.Context, context io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageImport(ctx context.Context, source image.ImportSource, ref string, options image.ImportOptions) (io.ReadCloser, error)
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
}

// Info describes a scanner image present on the engine.
type Info struct {
	Tag          string            `json:"tag"`
	ID           string            `json:"id"`
	NmapVersion  string            `json:"nmap_version"`
	RecipeSHA256 string            `json:"recipe_sha256"`
	Base         string            `json:"base"`
	Created      string            `json:"created"`
	Labels       map[string]string `json:"labels"`
}

// Manager finds, verifies and builds the scanner image.
type Manager struct {
	engine Engine
	// Progress receives build and base-making output (stderr in the CLI).
	progress io.Writer
	// Mirror is the Debian mirror for the offline base.
	mirror string
	recipe []byte
}

// New returns a manager; progress may be nil and mirror empty (default).
func New(engine Engine, progress io.Writer, mirror string) *Manager {
	if progress == nil {
		progress = io.Discard
	}
	if mirror == "" {
		mirror = DefaultMirror
	}
	return &Manager{engine: engine, progress: progress, mirror: mirror, recipe: nmapmcp.Dockerfile()}
}

// RecipeSHA256 is the hex sha256 of the embedded Dockerfile.nmap.
func (m *Manager) RecipeSHA256() string {
	sum := sha256.Sum256(m.recipe)
	return hex.EncodeToString(sum[:])
}

// buildArgs returns the build arguments for a base image reference.
func (m *Manager) buildArgs(base string) map[string]*string {
	args := map[string]string{"BASE_IMAGE": base, "NMAP_VERSION": NmapVersion, "NFTABLES_VERSION": NftablesVersion, "RECIPE_SHA256": m.RecipeSHA256()}
	out := make(map[string]*string, len(args))
	for k, v := range args {
		out[k] = &v
	}
	return out
}

// Tag is the content-derived tag for building on base: it changes when
// Dockerfile.nmap or any build argument changes.
func (m *Manager) Tag(base string) string {
	h := sha256.New()
	h.Write(m.recipe)
	args := m.buildArgs(base)
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "\x00%s=%s", k, *args[k])
	}
	short := strings.SplitN(NmapVersion, "+", 2)[0]
	return fmt.Sprintf("%s:%s-%s", Repository, short, hex.EncodeToString(h.Sum(nil))[:12])
}

// localBase returns the base to build on among those already present:
// the pinned upstream image first, then the offline-built one, as an image
// ID. It returns "" when neither is present.
func (m *Manager) localBase(ctx context.Context) (string, error) {
	refs := []string{PinnedBase, BaseRef}
	type answer struct {
		id  string
		err error
	}
	answers := make([]chan answer, len(refs))
	for i, ref := range refs { // both at once: this is on every start's path
		answers[i] = make(chan answer, 1)
		go func() {
			info, err := m.engine.ImageInspect(ctx, ref)
			answers[i] <- answer{info.ID, err}
		}()
	}
	for i, ref := range refs {
		a := <-answers[i]
		if a.err == nil {
			return a.id, nil
		}
		if !cerrdefs.IsNotFound(a.err) {
			return "", fmt.Errorf("inspect base image %s: %w", ref, a.err)
		}
	}
	return "", nil
}

// Current returns the expected scanner image if it is present and carries
// the expected labels. A missing image is reported as a *MissingError.
func (m *Manager) Current(ctx context.Context) (Info, error) {
	base, err := m.localBase(ctx)
	if err != nil {
		return Info{}, err
	}
	if base == "" {
		return Info{}, &MissingError{Ref: BaseRef, Why: "no base image (" + PinnedBase + " or " + BaseRef + ") is present"}
	}
	return m.Verify(ctx, m.Tag(base))
}

// MissingError says that the scanner image, or its base, is not present.
type MissingError struct {
	Ref string
	Why string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("scanner image %s is missing (%s); build it with: nmap-mcp image build", e.Ref, e.Why)
}

// Verify inspects tag and checks that it is a scanner image built from this
// binary's recipe: the recipe hash and nmap version labels must match.
func (m *Manager) Verify(ctx context.Context, tag string) (Info, error) {
	resp, err := m.engine.ImageInspect(ctx, tag)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return Info{}, &MissingError{Ref: tag, Why: "not built yet"}
		}
		return Info{}, fmt.Errorf("inspect scanner image %s: %w", tag, err)
	}
	info := Info{Tag: tag, ID: resp.ID, Created: resp.Created}
	if resp.Config != nil {
		info.Labels = resp.Config.Labels
	}
	info.NmapVersion = info.Labels[LabelNmapVersion]
	info.RecipeSHA256 = info.Labels[LabelRecipe]
	info.Base = info.Labels["org.nmap-mcp.base"]
	if info.RecipeSHA256 != m.RecipeSHA256() || info.NmapVersion != NmapVersion {
		return info, fmt.Errorf("image %s carries labels %s=%q and %s=%q, not this binary's %q and %q; remove it and run: nmap-mcp image build",
			tag, LabelRecipe, info.RecipeSHA256, LabelNmapVersion, info.NmapVersion, m.RecipeSHA256(), NmapVersion)
	}
	return info, nil
}

// Ensure returns the scanner image, building it (and its base) first when
// it is missing. It says on progress what it does.
func (m *Manager) Ensure(ctx context.Context) (Info, error) {
	info, err := m.Current(ctx)
	if err == nil {
		return info, nil
	}
	if _, missing := err.(*MissingError); !missing {
		return Info{}, err
	}
	fmt.Fprintf(m.progress, "nmap-mcp: the scanner image is not built yet; building it now (first use only)\n")
	return m.Build(ctx, false)
}

// Build builds the scanner image from the embedded recipe, making the base
// first if none is present. With noCache every step runs again.
func (m *Manager) Build(ctx context.Context, noCache bool) (Info, error) {
	base, err := m.ensureBase(ctx)
	if err != nil {
		return Info{}, err
	}
	tag := m.Tag(base)
	start := time.Now()
	fmt.Fprintf(m.progress, "nmap-mcp: building %s on base %.19s\n", tag, base)
	buildCtx, err := tarContext(m.recipe)
	if err != nil {
		return Info{}, err
	}
	resp, err := m.engine.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		BuildArgs:   m.buildArgs(base),
		Remove:      true,
		ForceRemove: true,
		NoCache:     noCache,
		PullParent:  false,
		Version:     build.BuilderV1,
		Labels:      map[string]string{"org.nmap-mcp.base": base},
	})
	if err != nil {
		return Info{}, fmt.Errorf("start image build of %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := followBuild(resp.Body, m.progress); err != nil {
		return Info{}, fmt.Errorf("build %s: %w", tag, err)
	}
	fmt.Fprintf(m.progress, "nmap-mcp: built %s in %.1fs\n", tag, time.Since(start).Seconds())
	return m.Verify(ctx, tag)
}

// ensureBase returns the ID of a base image, pulling the pinned one or
// making one offline when none is present.
func (m *Manager) ensureBase(ctx context.Context) (string, error) {
	base, err := m.localBase(ctx)
	if err != nil || base != "" {
		return base, err
	}
	if id, err := m.pullPinned(ctx); err == nil {
		return id, nil
	} else {
		fmt.Fprintf(m.progress, "nmap-mcp: cannot pull %s (%v); making a Debian bookworm base offline instead\n", PinnedBase, err)
	}
	return m.MakeBase(ctx)
}

func (m *Manager) pullPinned(ctx context.Context) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rc, err := m.engine.ImagePull(pctx, PinnedBase, image.PullOptions{})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if err := followBuild(rc, io.Discard); err != nil {
		return "", err
	}
	info, err := m.engine.ImageInspect(ctx, PinnedBase)
	if err != nil {
		return "", fmt.Errorf("inspect pulled base: %w", err)
	}
	return info.ID, nil
}
