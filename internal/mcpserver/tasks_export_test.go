package mcpserver

// SetTaskPage sets how many tasks one tasks/list page holds (tests).
func SetTaskPage(t *Tasks, n int) { t.page = n }
