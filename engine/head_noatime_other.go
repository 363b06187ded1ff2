//go:build unix && !linux

package engine

// headNoATime is Linux's O_NOATIME; other systems have none.
const headNoATime = 0
