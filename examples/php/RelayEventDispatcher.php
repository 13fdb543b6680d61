<?php
/**
 * An event dispatcher for the Optimizely PHP SDK that hands events to a local
 * `xpevents relay` in about a millisecond, instead of a synchronous request to the
 * Event API on every activate()/track()/decide().
 *
 *   $dispatcher = new \Xpevents\RelayEventDispatcher('http://127.0.0.1:8787');
 *   $dispatcher = new \Xpevents\RelayEventDispatcher([
 *       'relay_url' => 'http://127.0.0.1:8787',
 *       'fallback_url' => 'http://staging-collector:8788',  // never production from staging
 *       'timeout_ms' => 100, 'connect_timeout_ms' => 50, 'fallback_timeout_ms' => 10000,
 *       'token' => getenv('XPEVENTS_RELAY_TOKEN') ?: null,
 *       'logger' => function ($level, $message) { error_log($message); },
 *   ]);
 *   $optimizely = new \Optimizely\Optimizely($datafile, $dispatcher);
 *
 * Where events go:
 *   - relay URL without a path (http://127.0.0.1:8787): events built for the EU
 *     endpoint go to /eu/v1/events, all others to /v1/events (as xpevents'
 *     dispatchers map their `endpoint`); a URL with a path receives everything.
 *     PHP SDK 4.x builds every event for the US URL, whatever the datafile's region:
 *     an EU project configures the relay's EU path, 'http://127.0.0.1:8787/eu/v1/events',
 *     and an EU 'fallback_url' ('https://eu.logx.optimizely.com/v1/events').
 *   - the relay answers 204 once the events are durably spooled; it forwards them.
 *
 * When the relay does not take an event, the dispatcher does what the SDK's own
 * dispatcher would have done: one synchronous POST of the same payload, to
 * 'fallback_url' (default: the event's own URL; a URL without a path maps US/EU as
 * above; false: never send directly, log and drop). The relay is a forwarder, not a
 * judge: what it refuses (400 with a JSON path, 413) is what it cannot forward, and
 * the Event API may still take it, so every refusal falls back:
 *   - connection refused, connect or total timeout (a hung relay), any 5xx (503 is
 *     the relay's "spool full or failing"), 429, 404 (wrong relay URL), 400, 413, 415
 *     and any other answer: logged with the relay's error text, reason and JSON path
 *     (a warning), then sent directly;
 *   - 401/403 (a token mismatch): a configuration error, logged as an error, and sent
 *     directly too, so events keep flowing while it is fixed.
 * A relay that accepted an event but answered after the timeout makes the fallback
 * send it twice; both copies carry the same uuid and timestamp, and the Event API
 * de-duplicates on them.
 *
 * dispatchEvent() never throws. $this->lastOutcome says what happened to the last
 * event: "relay", "fallback", "dropped" (no fallback configured, or the params are
 * not JSON) or "failed" (the direct send failed too); $this->lastRelayError holds
 * the relay's refusal ("HTTP 400 invalid_string at $.visitors[0]: ...").
 */

namespace Xpevents;

use Optimizely\Event\Dispatcher\EventDispatcherInterface;
use Optimizely\Event\LogEvent;

class RelayEventDispatcher implements EventDispatcherInterface
{
    const DEFAULTS = [
        'relay_url' => 'http://127.0.0.1:8787',
        'timeout_ms' => 100,
        'connect_timeout_ms' => null, // default: timeout_ms
        'token' => null,
        'fallback_url' => null, // null: the event's URL; false: no direct send
        'fallback_timeout_ms' => 10000,
        'logger' => null,
    ];

    /** @var array the options, DEFAULTS completed */
    private $options;
    /** @var string */
    private $relayUrl;
    /** @var bool the relay URL has no path: map US/EU by the event's URL */
    private $isBase;
    /** @var resource|\CurlHandle|null reused: keep-alive to the relay */
    private $curl = null;

    /** @var string|null what happened to the last event (see the class comment) */
    public $lastOutcome = null;
    /** @var int|null HTTP status of the relay's last answer (null: no answer) */
    public $lastRelayStatus = null;
    /** @var string|null the relay's last refusal or transport error */
    public $lastRelayError = null;

    /**
     * @param string|array  $relayUrl          e.g. http://127.0.0.1:8787, or an array of
     *                                         options (the keys of DEFAULTS)
     * @param int           $timeoutMs         connect + total timeout for the relay
     * @param string|null   $token             sent as "Authorization: Bearer <token>"
     * @param int           $fallbackTimeoutMs timeout of the direct request (the SDK's
     *                                         own dispatcher waits 10 s)
     * @param callable|null $logger            function ($level, $message); default error_log
     * @param string|false|null $fallbackUrl   where a direct send goes (see the class comment)
     */
    public function __construct(
        $relayUrl = 'http://127.0.0.1:8787',
        $timeoutMs = 100,
        $token = null,
        $fallbackTimeoutMs = 10000,
        $logger = null,
        $fallbackUrl = null
    ) {
        $options = is_array($relayUrl) ? $relayUrl : [
            'relay_url' => $relayUrl,
            'timeout_ms' => $timeoutMs,
            'token' => $token,
            'fallback_timeout_ms' => $fallbackTimeoutMs,
            'logger' => $logger,
            'fallback_url' => $fallbackUrl,
        ];
        $unknown = array_diff(array_keys($options), array_keys(self::DEFAULTS));
        if ($unknown) {
            throw new \InvalidArgumentException(
                'RelayEventDispatcher: unknown option(s) ' . implode(', ', $unknown)
                . '; known: ' . implode(', ', array_keys(self::DEFAULTS))
            );
        }
        $options += self::DEFAULTS;
        if ($options['connect_timeout_ms'] === null) {
            $options['connect_timeout_ms'] = $options['timeout_ms'];
        }
        $this->options = $options;
        $this->relayUrl = rtrim($options['relay_url'], '/');
        $this->isBase = self::isBaseUrl($options['relay_url']);
    }

    public function dispatchEvent(LogEvent $event)
    {
        $body = json_encode($event->getParams());
        if ($body === false) {
            $this->lastOutcome = 'dropped';
            $this->log('error', 'event params are not JSON-serialisable: ' . json_last_error_msg());
            return;
        }
        $this->lastRelayError = null;
        $status = $this->postToRelay(self::route($this->relayUrl, $this->isBase, $event->getUrl()), $body);
        $this->lastRelayStatus = $status;
        if ($status !== null && $status >= 200 && $status < 300) {
            $this->lastOutcome = 'relay';
            return;
        }
        $fallback = $this->options['fallback_url'];
        if ($fallback === false) {
            $this->lastOutcome = 'dropped';
            $this->log('error', "{$this->lastRelayError}; no fallback_url: event dropped");
            return;
        }
        $level = ($status === 401 || $status === 403) ? 'error' : 'warning';
        $this->log($level, "{$this->lastRelayError}; sending directly");
        $url = $fallback === null ? $event->getUrl()
            : self::route(rtrim($fallback, '/'), self::isBaseUrl($fallback), $event->getUrl());
        $this->lastOutcome = $this->postDirect($event, $url, $body) ? 'fallback' : 'failed';
    }

    /** The relay URL for an event built for $eventUrl. */
    public function relayUrlFor($eventUrl)
    {
        return self::route($this->relayUrl, $this->isBase, $eventUrl);
    }

    private static function isBaseUrl($url)
    {
        $path = parse_url($url, PHP_URL_PATH);
        return $path === null || $path === '' || $path === '/';
    }

    /** $target itself, or (a base URL) its /v1/events or /eu/v1/events by $eventUrl's region. */
    private static function route($target, $isBase, $eventUrl)
    {
        if (!$isBase) {
            return $target;
        }
        $host = strtolower((string) parse_url($eventUrl, PHP_URL_HOST));
        $path = (string) parse_url($eventUrl, PHP_URL_PATH);
        $eu = strpos($host, 'eu.') === 0 || strpos($path, '/eu/') === 0;
        return $target . ($eu ? '/eu/v1/events' : '/v1/events');
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
        if ($this->options['token'] !== null) {
            $headers[] = 'Authorization: Bearer ' . $this->options['token'];
        }
        curl_setopt_array($this->curl, [
            CURLOPT_URL => $url,
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_NOSIGNAL => true, // required for timeouts below one second
            CURLOPT_CONNECTTIMEOUT_MS => (int) $this->options['connect_timeout_ms'],
            CURLOPT_TIMEOUT_MS => (int) $this->options['timeout_ms'],
            CURLOPT_PROXY => '', // the relay is local: never through a proxy
        ]);
        $response = curl_exec($this->curl);
        if ($response === false) {
            $this->lastRelayError = 'relay unreachable (' . curl_error($this->curl) . ')';
            return null;
        }
        $status = (int) curl_getinfo($this->curl, CURLINFO_RESPONSE_CODE);
        if ($status < 200 || $status >= 300) {
            $this->lastRelayError = self::describeRefusal($status, $response);
        }
        return $status;
    }

    /** "relay answered HTTP 400 invalid_string at $.visitors[0]: invalid event payload ..." */
    private static function describeRefusal($status, $response)
    {
        $text = "relay answered HTTP $status";
        if ($status === 401 || $status === 403) {
            $text .= ' (check the relay token)';
        }
        $answer = json_decode((string) $response, true);
        if (is_array($answer) && isset($answer['error'])) {
            if (isset($answer['reason'])) {
                $text .= ' ' . $answer['reason'];
            }
            if (isset($answer['path'])) {
                $text .= ' at ' . $answer['path'];
            }
            $text .= ': ' . $answer['error'];
        } elseif ($response !== '') {
            $text .= ': ' . substr((string) $response, 0, 200);
        }
        return $text;
    }

    /** The SDK's own behaviour: a synchronous POST of the same body. True on 2xx. */
    private function postDirect(LogEvent $event, $url, $body)
    {
        $headers = ['Expect:'];
        foreach ((array) $event->getHeaders() as $name => $value) {
            $headers[] = "$name: $value";
        }
        $timeout = (int) $this->options['fallback_timeout_ms'];
        $curl = curl_init();
        curl_setopt_array($curl, [
            CURLOPT_URL => $url,
            CURLOPT_CUSTOMREQUEST => $event->getHttpVerb(),
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => $timeout,
            CURLOPT_TIMEOUT_MS => $timeout,
        ]);
        $response = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $error = curl_error($curl);
        curl_close($curl);
        if ($response !== false && $status >= 200 && $status < 300) {
            return true;
        }
        $this->log('error', "direct event request to $url failed: " . ($response === false ? $error : "HTTP $status"));
        return false;
    }

    private function log($level, $message)
    {
        if ($this->options['logger'] !== null) {
            call_user_func($this->options['logger'], $level, $message);
        } else {
            error_log("xpevents RelayEventDispatcher [$level] $message");
        }
    }
}
