// HEALTHCHECK of the gateway image: GET /healthz on this container's own TLS port (SLIPWAY_LISTEN,
// default 443). Loopback, so the certificate's name is not checked here; every client checks it.
import https from 'node:https';

const listen = process.env.SLIPWAY_LISTEN ?? '0.0.0.0:443';
const port = Number(listen.slice(listen.lastIndexOf(':') + 1) || listen);
const req = https.get({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, timeout: 3000 }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', () => process.exit(1));
