// Loaded with `node --import` on Node < 24: the suite composes an npm
// undici 7 interceptor onto the global dispatcher for its interim-response
// tests, which fails on the undici 6 bundled in older Node ("fetch
// failed"); an npm undici Agent as the global dispatcher avoids that.
const bundled = parseInt((process.versions.undici || '0').split('.')[0], 10)
if (bundled < 7) {
  const { Agent, setGlobalDispatcher } = await import(process.env.SUITE_UNDICI)
  setGlobalDispatcher(new Agent())
}
