package doctor

import (
	"context"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows"
)

func run(context.Context, string, string) []engine.Check { return windows.Checks() }
