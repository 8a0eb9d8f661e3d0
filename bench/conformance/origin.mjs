// Starts the suite's origin (SUITE/test-engine/server/server.mjs, as it is)
// on 127.0.0.1 only: the suite's server listens on every interface.
//   usage: node origin.mjs SUITE_DIR   env: ORIGIN_PORT (8000), ORIGIN_PIDFILE
import net from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const suite = path.resolve(process.argv[2])
process.env.npm_config_protocol = 'http'
process.env.npm_config_port = process.env.ORIGIN_PORT || '8000'
process.env.npm_config_pidfile = process.env.ORIGIN_PIDFILE || '/tmp/vkp-conformance-origin.pid'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args.length === 1 && (typeof args[0] === 'string' || typeof args[0] === 'number')) {
    return listen.call(this, Number(args[0]), '127.0.0.1')
  }
  return listen.apply(this, args)
}
await import(pathToFileURL(path.join(suite, 'test-engine/server/server.mjs')))
