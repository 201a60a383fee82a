package images

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// A failing build names the step it failed at. (Parses the engine's JSON
// message stream as recorded; no engine needed.)
func TestFollowBuildNamesFailingStep(t *testing.T) {
	stream := `{"stream":"Step 1/10 : ARG BASE_IMAGE"}
{"stream":"\n"}
{"stream":"Step 5/10 : RUN apt-get update"}
{"stream":"\n ---\u003e Running in 0123\n"}
{"errorDetail":{"code":100,"message":"The command '/bin/sh -c apt-get update' returned a non-zero code: 100"},"error":"The command '/bin/sh -c apt-get update' returned a non-zero code: 100"}
`
	var out strings.Builder
	err := followBuild(strings.NewReader(stream), &out)
	var be *BuildError
	if !errors.As(err, &be) || be.Step != "Step 5/10 : RUN apt-get update" || !strings.Contains(err.Error(), "non-zero code: 100") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "Step 5/10") {
		t.Fatalf("progress not streamed: %q", out.String())
	}
	if err := followBuild(strings.NewReader(`{"status":"Pulling"}`+"\n"), io.Discard); err != nil {
		t.Fatalf("clean stream: %v", err)
	}
}
