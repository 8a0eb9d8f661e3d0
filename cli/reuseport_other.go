//go:build !linux

package cli

import "syscall"

// reusePort is nil where --reuse-port is not supported.
var reusePort func(_, _ string, rc syscall.RawConn) error
