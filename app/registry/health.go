package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hookd/hookd/app/resource"
)

// Health is the deliverer's delivery.EndpointHealth on the registry: it
// disables endpoints that answer 410 Gone or fail for longer than
// Config.DisableAfter, with the reason visible through the API.
type Health struct{ r *Registry }

// Health returns the registry's delivery.EndpointHealth.
func (r *Registry) Health() Health { return Health{r} }

// Succeeded ends endpoint id's failing streak.
func (h Health) Succeeded(ctx context.Context, id string) error {
	_, err := h.r.db.NewUpdate().Model((*Endpoint)(nil)).
		Set("failing_since = NULL").
		Where("id = ? AND failing_since IS NOT NULL", id).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("clear failing streak of endpoint %s: %w", id, err)
	}
	return nil
}

// Failed extends endpoint id's failing streak and disables it when it
// answered 410 Gone or has failed for longer than DisableAfter.
func (h Health) Failed(ctx context.Context, id string, gone bool, reason string) (bool, error) {
	var since time.Time
	err := h.r.db.NewUpdate().Model((*Endpoint)(nil)).
		Set("failing_since = coalesce(failing_since, clock_timestamp())").
		Where("id = ?", id).
		Returning("failing_since").
		Scan(ctx, &since)
	if err != nil {
		return false, fmt.Errorf("extend failing streak of endpoint %s: %w", id, resource.NotFound(err))
	}
	why := ""
	switch {
	case gone:
		why = "the endpoint answered 410 Gone"
	case time.Since(since) >= h.r.cfg.DisableAfter:
		why = fmt.Sprintf("every attempt failed since %s (last: %s)", since.UTC().Format(time.RFC3339), truncate(reason, 200))
	default:
		return false, nil
	}
	_, err = h.r.db.NewUpdate().Model((*Endpoint)(nil)).
		Set("disabled = true").
		Set("disabled_reason = ?", why).
		Set("disabled_at = clock_timestamp()").
		Set("updated_at = clock_timestamp()").
		Where("id = ? AND NOT disabled", id).
		Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("disable endpoint %s: %w", id, err)
	}
	return true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
