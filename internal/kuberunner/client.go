package kuberunner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// API is the part of the Kubernetes API the runner uses: Jobs (batch/v1),
// their pods' watch and log, events (core/v1) and the server's version.
// NewAPI makes one from a rest.Config; tests wrap client-go's fake
// clientset. It is this small so that the server does not link the whole
// clientset and the scheme of every API group (issue 21, item 7).
type API interface {
	CreateJob(ctx context.Context, namespace string, job *batchv1.Job) (*batchv1.Job, error)
	GetJob(ctx context.Context, namespace, name string) (*batchv1.Job, error)
	ListJobs(ctx context.Context, namespace string, opts metav1.ListOptions) (*batchv1.JobList, error)
	DeleteJob(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error
	WatchPods(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error)
	WatchEvents(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error)
	// PodLogs streams a container's log; the stream ends when ctx does.
	PodLogs(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error)
	ServerVersion(ctx context.Context) (*version.Info, error)
}

// codecs knows only the types the runner reads and writes. It is made on
// first use: a server that runs scans on Docker never pays for it.
var codecs = sync.OnceValue(func() *codecSet {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(batchv1.AddToScheme(s))
	return &codecSet{scheme: s, codecs: serializer.NewCodecFactory(s), params: runtime.NewParameterCodec(s)}
})

type codecSet struct {
	scheme *runtime.Scheme
	codecs serializer.CodecFactory
	params runtime.ParameterCodec
}

// restAPI is API over two REST clients (core/v1 and batch/v1) that share
// one HTTP client and one rate limiter, as a clientset's do.
type restAPI struct {
	core, batch *rest.RESTClient
}

// NewAPI returns the runner's API client for cfg.
func NewAPI(cfg *rest.Config) (API, error) {
	c := *cfg
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		burst := c.Burst
		if burst <= 0 {
			burst = 10
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, burst)
	}
	hc, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes HTTP client: %w", err)
	}
	core, err := restClient(c, hc, "/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	batch, err := restClient(c, hc, "/apis", batchv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &restAPI{core: core, batch: batch}, nil
}

func restClient(c rest.Config, hc *http.Client, path string, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c.APIPath = path
	c.GroupVersion = &gv
	cs := codecs()
	c.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(cs.scheme, cs.codecs).WithoutConversion()
	rc, err := rest.RESTClientForConfigAndClient(&c, hc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
	}
	return rc, nil
}

func (a *restAPI) CreateJob(ctx context.Context, ns string, job *batchv1.Job) (*batchv1.Job, error) {
	out := &batchv1.Job{}
	err := a.batch.Post().Namespace(ns).Resource("jobs").Body(job).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) GetJob(ctx context.Context, ns, name string) (*batchv1.Job, error) {
	out := &batchv1.Job{}
	err := a.batch.Get().Namespace(ns).Resource("jobs").Name(name).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) ListJobs(ctx context.Context, ns string, opts metav1.ListOptions) (*batchv1.JobList, error) {
	out := &batchv1.JobList{}
	err := a.batch.Get().Namespace(ns).Resource("jobs").VersionedParams(&opts, codecs().params).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) DeleteJob(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
	return a.batch.Delete().Namespace(ns).Resource("jobs").Name(name).Body(&opts).Do(ctx).Error()
}

func (a *restAPI) WatchPods(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return a.core.Get().Namespace(ns).Resource("pods").VersionedParams(&opts, codecs().params).Watch(ctx)
}

func (a *restAPI) WatchEvents(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return a.core.Get().Namespace(ns).Resource("events").VersionedParams(&opts, codecs().params).Watch(ctx)
}

func (a *restAPI) PodLogs(ctx context.Context, ns, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return a.core.Get().Namespace(ns).Name(pod).Resource("pods").SubResource("log").VersionedParams(opts, codecs().params).Stream(ctx)
}

func (a *restAPI) ServerVersion(ctx context.Context) (*version.Info, error) {
	raw, err := a.core.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var v version.Info
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decode the API server's version: %w", err)
	}
	return &v, nil
}
