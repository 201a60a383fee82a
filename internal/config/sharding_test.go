package config

import (
	"errors"
	"strings"
	"testing"
)

// sharding.shards must be 2..64 when sharding.threshold is set; the
// resolved rules then let nmap_scan's shards argument ask for up to it.
func TestResolveSharding(t *testing.T) {
	c := Default()
	r, err := c.Resolve()
	if err != nil || r.Sharding.Threshold != 0 || r.Rules.MaxShards != 0 {
		t.Fatalf("defaults: %+v %v", r.Sharding, err)
	}
	c.Sharding.Threshold, c.Sharding.Shards = 256, 8
	if r, err = c.Resolve(); err != nil || r.Rules.MaxShards != 8 || r.Sharding.Shards != 8 {
		t.Fatalf("threshold 256, 8 shards: %+v %v", r.Sharding, err)
	}
	for _, n := range []int{1, 65} {
		c.Sharding.Shards = n
		_, err := c.Resolve()
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != "sharding.shards" || !strings.Contains(err.Error(), "from 2 to 64") {
			t.Errorf("%d shards: %v", n, err)
		}
	}
}

// kubernetes.shard_spread is a node label key, none, or empty.
func TestShardSpreadChecked(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "none": true, "kubernetes.io/hostname": true, "topology.kubernetes.io/zone": true,
		"rack": true, "bad key": false, "/x": false, "a/b/c": false} {
		c := Default()
		c.Kubernetes.ShardSpread = v
		_, err := c.Resolve()
		var ke *KeyError
		if ok != (err == nil) || !ok && (!errors.As(err, &ke) || ke.Key != "kubernetes.shard_spread") {
			t.Errorf("%q: %v", v, err)
		}
	}
}
