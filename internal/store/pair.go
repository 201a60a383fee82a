package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Pair finds two finished records to compare, older first: by their ids,
// or a target's latest two finished scans. It refuses, naming the id,
// records that are unknown, still running, without a result, or of scan
// types that probe different things. client works as in Get.
func (s *Store) Pair(ctx context.Context, idA, idB, target, client string) (*Record, *Record, error) {
	var a, b *Record
	switch {
	case idA != "" && idB != "":
		if target != "" {
			return nil, nil, errors.New("give either id_a and id_b, or target, not both")
		}
		var err error
		if a, err = s.Get(ctx, idA, client); err != nil {
			return nil, nil, err
		}
		if b, err = s.Get(ctx, idB, client); err != nil {
			return nil, nil, err
		}
	case target != "" && idA == "" && idB == "":
		recs, err := s.List(ctx, Filter{Target: target, Finished: true, Limit: 2, Client: client})
		if err != nil {
			return nil, nil, err
		}
		if len(recs) < 2 {
			return nil, nil, fmt.Errorf("target %q has %d finished scans; a diff needs two", target, len(recs))
		}
		if a, err = s.Get(ctx, recs[1].ID, client); err != nil {
			return nil, nil, err
		}
		if b, err = s.Get(ctx, recs[0].ID, client); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, errors.New("give two scan ids (id_a and id_b), or a target to compare its latest two finished scans")
	}
	for _, r := range []*Record{a, b} {
		if !Finished(r.Status) {
			return nil, nil, fmt.Errorf("scan %s is still %s; compare it when it has finished", r.ID, r.Status)
		}
		if r.Result == nil {
			return nil, nil, fmt.Errorf("scan %s has no result to compare (status %s)", r.ID, r.Status)
		}
	}
	if family(a.ScanType) != family(b.ScanType) {
		return nil, nil, fmt.Errorf("scan %s (%s) and scan %s (%s) cannot be compared: they probe different things",
			a.ID, a.ScanType, b.ID, b.ScanType)
	}
	if a.StartedAt.After(b.StartedAt) {
		a, b = b, a
	}
	return a, b, nil
}

// family groups scan types whose results are comparable.
func family(scanType string) string {
	if slices.Contains([]string{"connect", "syn"}, scanType) {
		return "tcp"
	}
	return scanType
}
