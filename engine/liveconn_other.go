//go:build !linux

package engine

import (
	"github.com/valyala/fasthttp"
)

// peerOpen cannot peek portably here; idle connections are trusted.
func (c *uconn) peerOpen() bool { return true }

// dataWaiting cannot peek portably here: a body of unknown length streams.
func (c *uconn) dataWaiting() bool { return false }

// clientGone cannot peek portably here; clients are assumed present.
func clientGone(*fasthttp.RequestCtx) bool { return false }
