'use strict';
/**
 * Run the real Optimizely Node SDK from a datafile with the relay dispatcher as its only
 * event dispatcher, activate and track N users, close, print a JSON summary.
 *
 *   node run.js --datafile ../../tests/fixtures/datafile.json \
 *       --relay http://127.0.0.1:8787 --users 100 [--token T]
 *
 * No network feature of the SDK is enabled: the datafile is passed in (static config
 * manager, no sdkKey, no polling), no ODP manager, no VUID manager; events go through
 * a forwarding event processor to the relay dispatcher, which only talks to loopback.
 */
const fs = require('fs');
const {
  createInstance,
  createStaticProjectConfigManager,
  createForwardingEventProcessor,
} = require('@optimizely/optimizely-sdk');
const { createRelayDispatcher } = require('./relay_dispatcher');

function args(argv) {
  const out = {};
  for (let i = 2; i < argv.length; i += 1) {
    const [key, inline] = argv[i].replace(/^--/, '').split('=', 2);
    out[key] = inline !== undefined ? inline : argv[(i += 1)];
  }
  return out;
}

async function main() {
  const opts = args(process.argv);
  const users = Number(opts.users || 10);
  const datafile = fs.readFileSync(opts.datafile, 'utf8');
  const statuses = {};
  const accepted = [];
  const pending = [];
  const dispatcher = createRelayDispatcher({
    relayUrl: opts.relay || 'http://127.0.0.1:8787',
    token: opts.token || null,
    timeoutMs: Number(opts['timeout-ms'] || 5000),
    onResult(event, status, error) {
      const key = status === null ? `error:${error && error.name}` : String(status);
      statuses[key] = (statuses[key] || 0) + 1;
      if (status === 204) {
        for (const visitor of event.params.visitors) {
          for (const snapshot of visitor.snapshots) {
            for (const e of snapshot.events) accepted.push(e.uuid);
          }
        }
      }
    },
  });
  const tracked = {
    dispatchEvent(event) {
      const p = dispatcher.dispatchEvent(event);
      pending.push(p.catch(() => undefined));
      return p;
    },
  };
  const client = createInstance({
    projectConfigManager: createStaticProjectConfigManager({ datafile }),
    eventProcessor: createForwardingEventProcessor(tracked),
  });
  await client.onReady({ timeout: 5000 });
  let shown = 0;
  for (let i = 0; i < users; i += 1) {
    const userId = `node-user-${i}`;
    if (client.activate('checkout_button_color', userId) !== null) shown += 1;
    client.track('purchase', userId, {}, { revenue: 1000 + i });
  }
  await client.close();
  await Promise.all(pending);
  process.stdout.write(
    `${JSON.stringify({ users, shown, dispatched: pending.length, statuses, accepted })}\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
