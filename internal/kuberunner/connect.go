package kuberunner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Connect returns a client for the cluster named by kubeconfig, or when
// it is empty by the in-cluster config, else $KUBECONFIG, else
// ~/.kube/config, after checking that the API server answers within 5 s.
// The API's warnings (e.g. Pod Security "warn") go to log; log may be nil.
func Connect(ctx context.Context, kubeconfig string, log *slog.Logger) (API, error) {
	cfg, where, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.WarningHandlerWithContext = warnings{log}
	// Each scan makes a handful of calls; the default 5 per second would
	// queue a busy server's scans behind each other.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := NewAPI(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", where, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cs.ServerVersion(pctx); err != nil {
		return nil, fmt.Errorf("kubernetes API at %s (from %s) did not answer: %w; set kubernetes.kubeconfig or KUBECONFIG", cfg.Host, where, err)
	}
	return cs, nil
}

// warnings logs the API server's warnings instead of printing them.
type warnings struct{ log *slog.Logger }

func (w warnings) HandleWarningHeaderWithContext(_ context.Context, code int, agent, text string) {
	if code == 299 && text != "" {
		w.log.Warn("kubernetes API warning", "warning", text)
	}
}

// Health says whether the API server answers.
func (r *Runner) Health(ctx context.Context) error {
	if _, err := r.client.ServerVersion(ctx); err != nil {
		return fmt.Errorf("kubernetes API unreachable: %w", err)
	}
	return nil
}

// Version describes the cluster, e.g. "Kubernetes v1.37.2, namespace scans".
func (r *Runner) Version(ctx context.Context) (string, error) {
	v, err := r.client.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("ask the kubernetes API its version: %w", err)
	}
	return fmt.Sprintf("Kubernetes %s, namespace %s", v.GitVersion, r.cfg.Namespace), nil
}

func restConfig(kubeconfig string) (*rest.Config, string, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes.kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, kubeconfig, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, "the in-cluster service account", nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("no kubernetes configuration: not in a cluster, and neither KUBECONFIG nor ~/.kube/config gave one: %w; set kubernetes.kubeconfig", err)
	}
	return cfg, "KUBECONFIG or ~/.kube/config", nil
}
