package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/pkg/jsonmessage"
)

// tarContext returns a build context holding only the Dockerfile.
func tarContext(dockerfile []byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("write build context: %w", err)
	}
	if _, err := tw.Write(dockerfile); err != nil {
		return nil, fmt.Errorf("write build context: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write build context: %w", err)
	}
	return &buf, nil
}

// BuildError is a failure reported in the engine's JSON message stream.
type BuildError struct {
	Step    string // the last "Step N/M : ..." line seen, if any
	Message string
}

func (e *BuildError) Error() string {
	if e.Step == "" {
		return e.Message
	}
	return fmt.Sprintf("failed at %q: %s", e.Step, e.Message)
}

// followBuild copies a JSON message stream (build, pull or import) to out
// and returns a *BuildError naming the failing step if the stream reports one.
func followBuild(r io.Reader, out io.Writer) error {
	dec := json.NewDecoder(r)
	var step string
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read engine message stream: %w", err)
		}
		if msg.Stream != "" {
			fmt.Fprint(out, msg.Stream)
			for _, line := range strings.Split(msg.Stream, "\n") {
				if strings.HasPrefix(line, "Step ") {
					step = strings.TrimSpace(line)
				}
			}
		} else if msg.Status != "" {
			progress := ""
			if msg.Progress != nil {
				progress = msg.Progress.String()
			}
			fmt.Fprintf(out, "%s %s\n", msg.Status, progress)
		}
		if msg.Error != nil {
			return &BuildError{Step: step, Message: msg.Error.Message}
		}
		if msg.ErrorMessage != "" {
			return &BuildError{Step: step, Message: msg.ErrorMessage}
		}
	}
}
