//go:build !linux

package engine

import (
	"errors"
	"net"
)

// peerOpen cannot peek portably here; idle connections are trusted.
func (c *uconn) peerOpen() bool { return true }

// dataWaiting cannot peek portably here: a body of unknown length streams.
func (c *uconn) dataWaiting() bool { return false }

// connGone cannot peek portably here; clients are assumed present.
func connGone(net.Conn) bool { return false }

// Requests are written, then read, by the portable path here.
const sendThenReadOK = false

func sockRead(uintptr, []byte) (int, error)  { return 0, errors.ErrUnsupported }
func sockWrite(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
