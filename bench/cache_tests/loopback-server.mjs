// Not part of the upstream suite (added for edge-router's bench/cache_conformance.py):
// runs the suite's own origin server (test-engine/server/server.mjs, unchanged) bound to one
// address, 127.0.0.1 unless CACHE_TESTS_HOST says otherwise, instead of every interface.
// Port, protocol and pidfile come from the same variables as `npm run server`
// (npm_config_port, npm_config_protocol, npm_config_pidfile).
import http from 'http'
import process from 'process'

const host = process.env.CACHE_TESTS_HOST || '127.0.0.1'
const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (...args) {
  // server.mjs calls server.listen(port): add the host after the port
  if (args.length === 1 && (typeof args[0] === 'number' || typeof args[0] === 'string')) {
    args.push(host)
  }
  return listen.apply(this, args)
}

await import('./test-engine/server/server.mjs')
