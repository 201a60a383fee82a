package mcpserver

import (
	"bytes"
	"testing"
	"time"
)

// The tracker sees marks as mcp-go writes them, one message per Write.
// (Pure logic: no transport needed.)
func TestDeliveryWait(t *testing.T) {
	d := NewDelivery()
	var out bytes.Buffer
	w := d.Writer(&out)
	if d.Wait("c1", 1, 10*time.Millisecond) {
		t.Fatal("nothing written yet, but Wait succeeded")
	}
	done := make(chan bool)
	go func() { done <- d.Wait("c1", 2, 5*time.Second) }()
	w.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"_meta":{"io.nmap-mcp/seq":"c1:1"},"progress":1}}` + "\n"))
	w.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"_meta":{"io.nmap-mcp/seq":"c1:2"},"level":"info"}}` + "\n"))
	if !<-done {
		t.Fatal("Wait did not see the second notification")
	}
	if !bytes.Contains(out.Bytes(), []byte("c1:2")) {
		t.Fatal("the writer did not pass the bytes on")
	}
	if !d.Wait("other", 0, 0) || !(*Delivery)(nil).Wait("x", 5, 0) {
		t.Fatal("nothing to wait for must not block")
	}
}
