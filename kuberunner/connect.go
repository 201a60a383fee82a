package kuberunner

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Connect returns a client for the cluster named by kubeconfig, or when
// it is empty by the in-cluster config, else $KUBECONFIG, else
// ~/.kube/config, after checking that the API server answers within 5 s.
func Connect(ctx context.Context, kubeconfig string) (kubernetes.Interface, error) {
	cfg, where, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	// Each scan makes a handful of calls; the default 5 per second would
	// queue a busy server's scans behind each other.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", where, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/version").Do(pctx).Raw(); err != nil {
		return nil, fmt.Errorf("kubernetes API at %s (from %s) did not answer: %w; set kubernetes.kubeconfig or KUBECONFIG", cfg.Host, where, err)
	}
	return cs, nil
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
