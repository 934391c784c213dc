package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/operational"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/resource"
)

// setUpOperational returns the ID of the application HOOKD_OPERATIONAL_APP
// names ("" when unset), and registers the event types of the operational
// webhooks, with their schemas, when it is set. The application must
// exist: hookd refuses to start rather than publish into nothing. It is
// the one place that turns the setting into an application.
func setUpOperational(ctx context.Context, db *bun.DB, ref string, log *slog.Logger) (string, error) {
	if ref == "" {
		return "", nil
	}
	app, err := registry.New(db, registry.Config{}).App(ctx, ref)
	switch {
	case errors.Is(err, resource.ErrNotFound):
		return "", fmt.Errorf("HOOKD_OPERATIONAL_APP names application %s, which does not exist: create it (POST /v1/apps) and set its id, or unset HOOKD_OPERATIONAL_APP", ref)
	case err != nil:
		return "", fmt.Errorf("find HOOKD_OPERATIONAL_APP: %w", err)
	}
	if err := events.NewStore(db).EnsureEventTypes(ctx, operational.EventTypes()); err != nil {
		return "", fmt.Errorf("register the operational event types: %w", err)
	}
	log.InfoContext(ctx, "operational webhooks on", slog.String("app_id", app.ID))
	return app.ID, nil
}
