<?php
/**
 * An event dispatcher for the Optimizely PHP SDK that hands events to a local
 * `xpevents relay` in about a millisecond, instead of a synchronous request to the
 * Event API on every activate()/track().
 *
 *   $dispatcher = new \Xpevents\RelayEventDispatcher('http://127.0.0.1:8787');
 *   $optimizely = new \Optimizely\Optimizely($datafile, $dispatcher);
 *
 * Where events go:
 *   - relay URL without a path (http://127.0.0.1:8787): events built for the EU
 *     endpoint go to /eu/v1/events, all others to /v1/events (as xpevents'
 *     dispatchers map their `endpoint`); a URL with a path receives everything.
 *   - the relay answers 204 once the events are durably spooled; it forwards them.
 *
 * When the relay cannot take them, the dispatcher falls back to the SDK's own
 * behaviour: one synchronous POST of the same payload to the event's original URL.
 * A relay outage then slows requests down; it loses nothing.
 *   - fallback: connection refused or timed out (default 100 ms), any 5xx (503 is the
 *     relay's "spool full or failing"), 429, 401/403 (a token mismatch is a
 *     configuration error, logged; events keep flowing), 404 (wrong relay URL) and any
 *     other unexpected answer;
 *   - no fallback: 400 and 413. The relay validates with the Event API's own schema
 *     and size limit, so the Event API would refuse the same payload; the event is
 *     logged and dropped, as the SDK's own dispatcher would after its request failed.
 * A relay that accepted an event but answered after the timeout makes the fallback
 * send it twice; both copies carry the same uuid and timestamp, and the Event API
 * de-duplicates on them.
 *
 * dispatchEvent() never throws. $this->lastOutcome says what happened to the last
 * event: "relay", "fallback", "rejected" (400/413) or "failed" (fallback failed too).
 */

namespace Xpevents;

use Optimizely\Event\Dispatcher\EventDispatcherInterface;
use Optimizely\Event\LogEvent;

class RelayEventDispatcher implements EventDispatcherInterface
{
    /** @var string */
    private $relayUrl;
    /** @var bool the relay URL has no path: map US/EU by the event's URL */
    private $isBase;
    /** @var int */
    private $timeoutMs;
    /** @var int */
    private $fallbackTimeoutMs;
    /** @var string|null */
    private $token;
    /** @var callable|null function (string $level, string $message): void */
    private $logger;
    /** @var resource|\CurlHandle|null reused: keep-alive to the relay */
    private $curl = null;

    /** @var string|null what happened to the last event (see the class comment) */
    public $lastOutcome = null;
    /** @var int|null HTTP status of the relay's last answer (null: no answer) */
    public $lastRelayStatus = null;

    /**
     * @param string        $relayUrl          e.g. http://127.0.0.1:8787
     * @param int           $timeoutMs         connect + total timeout for the relay
     * @param string|null   $token             sent as "Authorization: Bearer <token>"
     * @param int           $fallbackTimeoutMs timeout of the direct request (the SDK's
     *                                         own dispatcher waits 10 s)
     * @param callable|null $logger            function ($level, $message); default error_log
     */
    public function __construct(
        $relayUrl = 'http://127.0.0.1:8787',
        $timeoutMs = 100,
        $token = null,
        $fallbackTimeoutMs = 10000,
        $logger = null
    ) {
        $this->relayUrl = rtrim($relayUrl, '/');
        $path = parse_url($relayUrl, PHP_URL_PATH);
        $this->isBase = ($path === null || $path === '' || $path === '/');
        $this->timeoutMs = (int) $timeoutMs;
        $this->fallbackTimeoutMs = (int) $fallbackTimeoutMs;
        $this->token = $token;
        $this->logger = $logger;
    }

    public function dispatchEvent(LogEvent $event)
    {
        $body = json_encode($event->getParams());
        if ($body === false) {
            $this->lastOutcome = 'rejected';
            $this->log('error', 'event params are not JSON-serialisable: ' . json_last_error_msg());
            return;
        }
        $status = $this->postToRelay($this->relayUrlFor($event->getUrl()), $body);
        $this->lastRelayStatus = $status;
        if ($status !== null && $status >= 200 && $status < 300) {
            $this->lastOutcome = 'relay';
            return;
        }
        if ($status === 400 || $status === 413) {
            $this->lastOutcome = 'rejected';
            $this->log('error', "relay refused the event with HTTP $status (invalid or too large); dropped");
            return;
        }
        if ($status === 401 || $status === 403) {
            $this->log('error', "relay answered HTTP $status: check the relay token; sending directly");
        }
        $this->lastOutcome = $this->postDirect($event, $body) ? 'fallback' : 'failed';
    }

    /** The relay URL for an event built for $eventUrl. */
    public function relayUrlFor($eventUrl)
    {
        if (!$this->isBase) {
            return $this->relayUrl;
        }
        $host = strtolower((string) parse_url($eventUrl, PHP_URL_HOST));
        $path = (string) parse_url($eventUrl, PHP_URL_PATH);
        $eu = strpos($host, 'eu.') === 0 || strpos($path, '/eu/') === 0;
        return $this->relayUrl . ($eu ? '/eu/v1/events' : '/v1/events');
    }

    /** POST to the relay; the HTTP status, or null when there was no answer in time. */
    private function postToRelay($url, $body)
    {
        if ($this->curl === null) {
            $this->curl = curl_init();
        } else {
            curl_reset($this->curl);
        }
        $headers = ['Content-Type: application/json', 'Expect:'];
        if ($this->token !== null) {
            $headers[] = 'Authorization: Bearer ' . $this->token;
        }
        curl_setopt_array($this->curl, [
            CURLOPT_URL => $url,
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_NOSIGNAL => true, // required for timeouts below one second
            CURLOPT_CONNECTTIMEOUT_MS => $this->timeoutMs,
            CURLOPT_TIMEOUT_MS => $this->timeoutMs,
            CURLOPT_PROXY => '', // the relay is local: never through a proxy
        ]);
        $response = curl_exec($this->curl);
        if ($response === false) {
            $this->log('warning', 'relay unreachable (' . curl_error($this->curl) . '); sending directly');
            return null;
        }
        return (int) curl_getinfo($this->curl, CURLINFO_RESPONSE_CODE);
    }

    /** The SDK's own behaviour: a synchronous POST to the event's URL. True on 2xx. */
    private function postDirect(LogEvent $event, $body)
    {
        $headers = ['Expect:'];
        foreach ((array) $event->getHeaders() as $name => $value) {
            $headers[] = "$name: $value";
        }
        $curl = curl_init();
        curl_setopt_array($curl, [
            CURLOPT_URL => $event->getUrl(),
            CURLOPT_CUSTOMREQUEST => $event->getHttpVerb(),
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => $this->fallbackTimeoutMs,
            CURLOPT_TIMEOUT_MS => $this->fallbackTimeoutMs,
        ]);
        $response = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $error = curl_error($curl);
        curl_close($curl);
        if ($response !== false && $status >= 200 && $status < 300) {
            return true;
        }
        $this->log('error', 'direct event request failed: ' . ($response === false ? $error : "HTTP $status"));
        return false;
    }

    private function log($level, $message)
    {
        if ($this->logger !== null) {
            call_user_func($this->logger, $level, $message);
        } else {
            error_log("xpevents RelayEventDispatcher [$level] $message");
        }
    }
}
