//go:build !linux

package main

import (
	"context"
	"errors"
)

func runFloor(context.Context, string, int, int, string) error {
	return errors.New("bench floor: Linux only (epoll)")
}
