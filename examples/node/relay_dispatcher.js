'use strict';
/**
 * An event dispatcher for the Optimizely JavaScript SDK (v5+/v6: dispatchEvent returns
 * a Promise of {statusCode}) that posts every event to a local `xpevents relay`.
 *
 *   const { createRelayDispatcher } = require('./relay_dispatcher');
 *   const dispatcher = createRelayDispatcher({ relayUrl: 'http://127.0.0.1:8787' });
 *   createInstance({ ..., eventProcessor: createForwardingEventProcessor(dispatcher) });
 *
 * The relay URL maps like xpevents' dispatchers' `endpoint`: a base URL sends events
 * built for the EU endpoint to /eu/v1/events and all others to /v1/events; a URL with a
 * path receives everything. The event's own URL (the Event API) is never contacted:
 * this dispatcher talks to the relay only, and refuses a relay URL that is not on
 * loopback unless allowRemote is set.
 *
 * A 204 means the relay spooled the events durably. Anything else rejects the Promise
 * (or resolves with the status for non-2xx), and the SDK's event processor decides
 * whether to retry (the batch processor retries; the forwarding processor logs).
 */

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function createRelayDispatcher({
  relayUrl = 'http://127.0.0.1:8787',
  timeoutMs = 1000,
  token = null,
  allowRemote = false,
  onResult = null,
} = {}) {
  const base = new URL(relayUrl);
  if (!allowRemote && !LOOPBACK.has(base.hostname)) {
    throw new Error(`relayUrl ${relayUrl} is not on loopback (pass allowRemote: true)`);
  }
  const isBase = base.pathname === '' || base.pathname === '/';
  const root = relayUrl.replace(/\/+$/, '');

  function targetFor(eventUrl) {
    if (!isBase) return relayUrl;
    let eu = false;
    try {
      const u = new URL(eventUrl);
      eu = u.hostname.toLowerCase().startsWith('eu.') || u.pathname.startsWith('/eu/');
    } catch (_) {
      eu = false;
    }
    return root + (eu ? '/eu/v1/events' : '/v1/events');
  }

  return {
    async dispatchEvent(event) {
      const headers = { 'Content-Type': 'application/json' };
      if (token) headers.Authorization = `Bearer ${token}`;
      try {
        const response = await fetch(targetFor(event.url), {
          method: 'POST',
          headers,
          body: JSON.stringify(event.params),
          signal: AbortSignal.timeout(timeoutMs),
        });
        await response.arrayBuffer(); // release the connection for keep-alive
        if (onResult) onResult(event, response.status, null);
        return { statusCode: response.status };
      } catch (error) {
        if (onResult) onResult(event, null, error);
        throw error;
      }
    },
  };
}

module.exports = { createRelayDispatcher };
