package doctor

import (
	"context"

	"github.com/exewall/exewall/darwin"
	"github.com/exewall/exewall/engine"
)

func run(ctx context.Context, _, _ string) []engine.Check { return darwin.Checks(ctx) }
