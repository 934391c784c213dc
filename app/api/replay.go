package api

import (
	"github.com/hookd/hookd/tasks/ledger"
)

// ReplaySteering are the fields that steer a bulk retry or a recovery.
// (Exported, as are the other embedded structs, so that huma can set its
// fields.)
type ReplaySteering struct {
	DryRun bool `json:"dry_run,omitempty" doc:"Count what would be sent, in the job's count, and send nothing."`
	Rate   int  `json:"rate,omitempty" minimum:"1" maximum:"10000" doc:"Send at most this many deliveries a second (1 to 10,000), so that a receiver that has just come back is not flooded; left out for no pace."`
}

func (r ReplaySteering) replay() ledger.Replay {
	return ledger.Replay{DryRun: r.DryRun, Rate: r.Rate}
}
