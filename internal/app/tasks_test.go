package app

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
)

// Task requests over HTTP are answered by the task layer (from the scans
// service), not by mcp-go's in-memory tasks: an unknown task names the
// scan id it wanted, and a task-augmented nmap_scan without an engine is
// refused saying what to do. In-process, no engine (-short).
func TestHTTPTasks(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-engine.sock")
	url := serveHTTP(t, newTestApp(t, config.Default(), HTTP))
	post := func(body string) string {
		req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := post(`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"0123456789ab"}}`); !strings.Contains(got, `no task \"0123456789ab\"`) {
		t.Fatalf("tasks/get of an unknown scan: %s", got)
	}
	got := post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nmap_scan","arguments":{"targets":"127.0.0.1","ports":"22"},"task":{}}}`)
	if !strings.Contains(got, `"error"`) || !strings.Contains(got, "no-engine.sock") {
		t.Fatalf("task without an engine: %s", got)
	}
}
