//go:build !linux

package engine

import "net"

// peerOpen cannot peek portably here; idle connections are trusted.
func (c *uconn) peerOpen() bool { return true }

// dataWaiting cannot peek portably here: a body of unknown length streams.
func (c *uconn) dataWaiting() bool { return false }

// connGone cannot peek portably here; clients are assumed present.
func connGone(net.Conn) bool { return false }
