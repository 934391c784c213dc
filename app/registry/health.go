package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
)

// Health is the deliverer's delivery.EndpointHealth on the registry: it
// disables endpoints that answer 410 Gone or fail for longer than
// Config.DisableAfter, with the reason visible through the API. Each
// change of state (a streak begun or ended, an endpoint disabled) is told
// to Config.EndpointChanged in its own transaction.
type Health struct{ r *Registry }

// Health returns the registry's delivery.EndpointHealth.
func (r *Registry) Health() Health { return Health{r} }

// healthRow is what the health of an endpoint reads and changes.
type healthRow struct {
	AppID        string     `bun:"app_id"`
	FailingSince *time.Time `bun:"failing_since"`
	Disabled     bool       `bun:"disabled"`
	// Now is the database's clock when the row was read or changed.
	Now time.Time `bun:"now"`
}

const healthColumns = "app_id, failing_since, disabled, clock_timestamp() AS now"

// Succeeded ends endpoint id's failing streak.
func (h Health) Succeeded(ctx context.Context, id string) error {
	err := h.r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// The row lock makes one of concurrent successes end the streak.
		var ep healthRow
		err := tx.NewSelect().Model((*Endpoint)(nil)).ColumnExpr(healthColumns).
			Where("id = ? AND failing_since IS NOT NULL", id).For("UPDATE").Scan(ctx, &ep)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil // no streak runs (or the endpoint is gone)
		case err != nil:
			return err
		}
		if _, err := tx.NewUpdate().Model((*Endpoint)(nil)).Set("failing_since = NULL").Where("id = ?", id).Exec(ctx); err != nil {
			return err
		}
		return h.r.changed(ctx, tx, EndpointChange{
			Kind: ChangeRecovered, AppID: ep.AppID, EndpointID: id, FailingSince: ep.FailingSince, At: ep.Now,
		})
	})
	if err != nil {
		return fmt.Errorf("clear failing streak of endpoint %s: %w", id, err)
	}
	return nil
}

// Failed extends endpoint id's failing streak and disables it when it
// answered 410 Gone or has failed for longer than DisableAfter.
func (h Health) Failed(ctx context.Context, id string, gone bool, reason string) (bool, error) {
	// While a streak runs short of DisableAfter, a failure changes
	// nothing: one read, no transaction.
	if !gone {
		var ep healthRow
		err := h.r.db.NewSelect().Model((*Endpoint)(nil)).ColumnExpr(healthColumns).Where("id = ?", id).Scan(ctx, &ep)
		if err != nil {
			return false, fmt.Errorf("read failing streak of endpoint %s: %w", id, resource.NotFound(err))
		}
		if ep.FailingSince != nil && time.Since(*ep.FailingSince) < h.r.cfg.DisableAfter {
			return false, nil
		}
	}
	var disabled bool
	err := h.r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		disabled = false // a run again starts over
		// Concurrent failures queue on the row: one of them begins the
		// streak, the others find it begun.
		var ep healthRow
		began := true
		err := tx.NewUpdate().Model((*Endpoint)(nil)).
			Set("failing_since = clock_timestamp()").
			Where("id = ? AND failing_since IS NULL", id).
			Returning(healthColumns).
			Scan(ctx, &ep)
		if errors.Is(err, sql.ErrNoRows) {
			began = false
			err = tx.NewSelect().Model((*Endpoint)(nil)).ColumnExpr(healthColumns).Where("id = ?", id).Scan(ctx, &ep)
		}
		if err != nil {
			return fmt.Errorf("extend failing streak of endpoint %s: %w", id, resource.NotFound(err))
		}
		since := ep.Now
		if ep.FailingSince != nil {
			since = *ep.FailingSince
		}
		why := ""
		switch {
		case gone:
			why = "the endpoint answered 410 Gone"
		case time.Since(since) >= h.r.cfg.DisableAfter:
			why = fmt.Sprintf("every attempt failed since %s (last: %s)", since.UTC().Format(time.RFC3339), truncate(reason, 200))
		case began && !ep.Disabled:
			return h.r.changed(ctx, tx, EndpointChange{
				Kind: ChangeFailing, AppID: ep.AppID, EndpointID: id, Reason: truncate(reason, 200), FailingSince: &since, At: since,
			})
		default:
			return nil
		}
		// An endpoint disabled by the attempt that began its streak is
		// told disabled only: the streak is in the event.
		disabled = true
		var at time.Time
		err = tx.NewUpdate().Model((*Endpoint)(nil)).
			Set("disabled = true").
			Set("disabled_reason = ?", why).
			Set("disabled_at = clock_timestamp()").
			Set("updated_at = clock_timestamp()").
			Where("id = ? AND NOT disabled", id).
			Returning("disabled_at").
			Scan(ctx, &at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil // disabled already
		case err != nil:
			return fmt.Errorf("disable endpoint %s: %w", id, err)
		}
		return h.r.changed(ctx, tx, EndpointChange{
			Kind: ChangeDisabled, AppID: ep.AppID, EndpointID: id, Reason: why, FailingSince: &since, At: at,
		})
	})
	if err != nil {
		return false, err
	}
	return disabled, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
