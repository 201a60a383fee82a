// Package metrics exposes nmap-mcp's Prometheus metrics: scans started and
// finished by status and type, scan durations, running and queued scans,
// container start latency, and refusals by reason.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors, on a registry of their own.
type Metrics struct {
	reg      *prometheus.Registry
	started  *prometheus.CounterVec
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
	startLat prometheus.Histogram
	refused  *prometheus.CounterVec
	webhooks *prometheus.CounterVec
}

// New registers the collectors; queue reports running and waiting scans.
func New(queue func() (running, waiting int)) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nmap_mcp_scans_started_total",
			Help: "Scans whose container was started, by scan type."}, []string{"type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nmap_mcp_scans_finished_total",
			Help: "Scans that ended, by status and scan type."}, []string{"status", "type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nmap_mcp_scan_duration_seconds",
			Help: "Scan run time, from container start to exit.", Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600}}, []string{"type"}),
		startLat: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nmap_mcp_container_start_seconds",
			Help: "Time from a scan's start to its container running.", Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5}}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nmap_mcp_refusals_total",
			Help: "Calls refused before anything ran, by reason."}, []string{"reason"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nmap_mcp_watch_webhooks_total",
			Help: "Watch webhook deliveries, by outcome (delivered, failed: given up after the retries)."}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.started, m.finished, m.duration, m.startLat, m.refused, m.webhooks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nmap_mcp_scans_running", Help: "Scans holding a run slot."},
			func() float64 { r, _ := queue(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nmap_mcp_scans_queued", Help: "Scans waiting for a run slot."},
			func() float64 { _, w := queue(); return float64(w) }),
	)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// ScanStarted counts a started scan.
func (m *Metrics) ScanStarted(scanType string) { m.started.WithLabelValues(scanType).Inc() }

// ScanFinished counts an ended scan and observes its duration.
func (m *Metrics) ScanFinished(scanType, status string, d time.Duration) {
	m.finished.WithLabelValues(status, scanType).Inc()
	m.duration.WithLabelValues(scanType).Observe(d.Seconds())
}

// ContainerStarted observes a container's start latency.
func (m *Metrics) ContainerStarted(latency time.Duration) { m.startLat.Observe(latency.Seconds()) }

// Refused counts a refusal; reason is a short word (validation, scope,
// budget, queue_full, auth, origin, body_too_large).
func (m *Metrics) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// Webhook counts a watch webhook delivery by outcome: delivered or failed.
func (m *Metrics) Webhook(outcome string) { m.webhooks.WithLabelValues(outcome).Inc() }
