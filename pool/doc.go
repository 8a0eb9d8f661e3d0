// Package pool holds vkp's reusable byte buffers.
//
// Ownership rules (every caller follows them):
//
//   - Get returns a buffer the caller owns exclusively until it calls Put.
//     After Put the caller must not touch the buffer or any slice of its B.
//   - A buffer may be handed to another goroutine (the mirror sender does);
//     ownership moves with it and the receiver calls Put exactly once.
//   - Bytes borrowed from a *fasthttp.RequestCtx are valid only until the
//     handler returns. Work that outlives the handler copies them into a
//     pooled buffer first, or swaps the request body buffer out.
//   - Put drops buffers whose capacity is above the pool's limit instead of
//     keeping them, so one 64 MiB request does not pin 64 MiB forever.
//   - Large buffers (256 KiB to 16 MiB, large.go) come from GetCap by size
//     class: a kept one, else one cut from a slab outside the Go heap in
//     huge pages, else a new heap one. Slab memory is never freed: a slab
//     buffer that is not Put back is lost to the slab (not leaked to the
//     OS), and one used after Put is someone else's body, as with any pooled
//     buffer.
package pool
