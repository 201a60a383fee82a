package scans

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/shard"
)

// Red-team tests of runShards (fake runner, no engine: they run under
// -short).

// A sharded scan keeps at most MaxOutput bytes of XML, as an unsharded
// one does (executor's capture keeps MaxOutput and counts the rest in
// DroppedStdout; the record's RawXML is res.Stdout). runShards keeps the
// whole merged document in memory (shardBuffer is unbounded) and hands it
// on as res.Stdout, so a large or hostile scan's memory and stored XML
// grow without the configured bound.
func TestRedteamShardedOutputBounded(t *testing.T) {
	j, _, _ := shardJob(t, "10.9.0.0/22") // 1024 hosts, ~280 bytes each
	j.Stdout = io.Discard
	j.MaxOutput = 16 << 10
	blocks, err := shard.Config{Threshold: 1, Shards: 2}.Plan(j.Spec, 0)
	if err != nil || len(blocks) != 2 {
		t.Fatalf("plan %v %v", blocks, err)
	}
	res, err := runShards(context.Background(), &shardFake{}, j, blocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) > j.MaxOutput {
		t.Fatalf("kept %d bytes of XML, MaxOutput is %d (DroppedStdout %d)", len(res.Stdout), j.MaxOutput, res.DroppedStdout)
	}
}

// noContainerFake fails shard 2 before any container exists: no event,
// no container id. The Docker runner does so when the fence or the host
// fence cannot be set up, the create fails, or — most often — the scan is
// cancelled while that shard still waits for its fencer (executor.go:
// "scan cancelled before it started", before ContainerCreate; fencers
// start one after the other, ~0.7 s each). Shard 1 runs and is removed.
type noContainerFake struct{ shardFake }

func (f *noContainerFake) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	if job.Spec.Labels[shard.LabelShard] == "2-of-2" {
		return nil, fmt.Errorf("create container: %w", io.ErrUnexpectedEOF)
	}
	return f.shardFake.Run(ctx, job)
}

// The scan's queue slot is held until the scan's container is "gone"
// (run.go: markGone on a removed/abandoned event, or when the Result has
// no ContainerID). When one shard never made a container, runShards
// forwards "removed" only when all n shards reported it, so it never does,
// while res.ContainerID names shard 1's container: the slot is held for
// run.go's one-minute fallback after every such scan (with the default
// queue.max_concurrent 1, the next scan waits a minute).
func TestRedteamShardGoneWhenOneShardMadeNoContainer(t *testing.T) {
	j, _, events := shardJob(t, "10.9.0.0/29")
	blocks, _ := shard.Config{Threshold: 1, Shards: 2}.Plan(j.Spec, 0)
	start := time.Now()
	res, err := runShards(context.Background(), &noContainerFake{}, j, blocks, 0)
	if err == nil {
		t.Fatal("a failed shard did not fail the scan")
	}
	gone := false
	for _, ev := range *events {
		if ev.Step == executor.StepRemoved || ev.Step == executor.StepAbandoned {
			gone = true
		}
	}
	if !gone && res != nil && res.ContainerID != "" {
		t.Fatalf("every container is gone after %v, but no removed event reached the scan and the result names container %q: "+
			"run.go holds the queue slot until its one-minute fallback", time.Since(start).Round(time.Millisecond), res.ContainerID)
	}
}

// failAllFake fails every shard before its nmap writes anything, with the
// runner's typed error (here a missing image; a fence that cannot be set
// up, or an engine lost between admission and the run, look the same).
type failAllFake struct{ shardFake }

func (f *failAllFake) Run(ctx context.Context, job executor.Job) (*executor.Result, error) {
	return &executor.Result{}, &executor.ImageError{Image: "sha256:gone", Err: io.EOF}
}

// When no shard wrote any XML, runShards returns only "merge the shards'
// XML: merge shards: no shard wrote an <nmaprun> start": the shards' own
// errors (typed, with the runner's advice: image missing, engine away,
// fence) are dropped, so statusOf and the Advice hook cannot classify it
// and the record says nothing a person can act on. An unsharded scan's
// record names the image.
func TestRedteamShardErrorsKeptWhenNoXML(t *testing.T) {
	j, _, _ := shardJob(t, "10.9.0.0/29")
	blocks, _ := shard.Config{Threshold: 1, Shards: 2}.Plan(j.Spec, 0)
	_, err := runShards(context.Background(), &failAllFake{}, j, blocks, 0)
	var ie *executor.ImageError
	if !errors.As(err, &ie) {
		t.Fatalf("every shard failed with a missing image, the scan's error hides it: %v", err)
	}
}
