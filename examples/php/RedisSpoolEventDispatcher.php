<?php
/**
 * An event dispatcher for the Optimizely PHP SDK with no network hop to an HTTP service:
 * dispatchEvent() appends the event's visitors to the Redis stream that xpevents'
 * RedisSpool reads, in its record format, and `xpevents forward --spool redis://...`
 * (or an `xpevents relay --spool redis://...`) batches them and sends them upstream
 * with retries. It needs the phpredis extension (Debian: php-redis).
 *
 *   $dispatcher = new \Xpevents\RedisSpoolEventDispatcher([
 *       'redis_url' => 'redis://127.0.0.1:6379/0?stream=xpevents',
 *       'fallback' => new \Xpevents\RelayEventDispatcher('http://127.0.0.1:8787'),
 *   ]);
 *   $optimizely = new \Optimizely\Optimizely($datafile, $dispatcher);
 *
 * The record format (a contract, see docs/operations.md "The Redis record format"):
 * for a stream S, one XADD per visitor with fields e (envelope key), v (the visitor's
 * JSON), t (enqueued at, epoch seconds), a ("0" attempts), f ("" first attempt);
 * HSETNX S:envelopes <e> <envelope>; HINCRBY S:meta bytes <visitor bytes>. The
 * envelope is "B" . <event URL> . "\n" . <the payload without its visitors, as JSON,
 * with "visitors":[] as its last key>. All of it in one Lua script: atomic, one round
 * trip. The JSON is PHP's json_encode, the bytes the SDK's own dispatcher would send.
 *
 * Options (an array; unknown keys are an InvalidArgumentException):
 *   redis_url          redis://[:password@]host:port/db?stream=NAME (default
 *                      redis://127.0.0.1:6379/0, stream xpevents)
 *   connect_timeout_ms connecting to Redis (default 50)
 *   read_timeout_ms    waiting for Redis' answer (default 100)
 *   retry_after_ms     after a Redis failure, events go to the fallback for this long
 *                      before Redis is tried again (default 1000)
 *   max_events         a stream holding this many entries takes no more: events go to
 *                      the fallback (default 1000000; the forwarder is down or slow)
 *   event_url          the URL written into the envelope (default: the event's own;
 *                      PHP SDK 4.x builds every event for the US URL, so an EU project
 *                      sets 'https://eu.logx.optimizely.com/v1/events')
 *   fallback           an EventDispatcherInterface used when Redis fails (default: a
 *                      synchronous POST to the event's URL, as the SDK's own dispatcher)
 *   logger             function ($level, $message); default error_log
 *
 * When dispatchEvent() returns with $lastOutcome "redis", the visitors are in Redis
 * (as durable as Redis is configured: appendonly yes + appendfsync always survives a
 * restart; Redis' default does not). Otherwise the fallback took the event
 * ("fallback:<its outcome>") or it was dropped ("dropped": params not JSON). Never throws.
 */

namespace Xpevents;

use Optimizely\Event\Dispatcher\EventDispatcherInterface;
use Optimizely\Event\LogEvent;

class RedisSpoolEventDispatcher implements EventDispatcherInterface
{
    const DEFAULTS = [
        'redis_url' => 'redis://127.0.0.1:6379/0',
        'connect_timeout_ms' => 50,
        'read_timeout_ms' => 100,
        'retry_after_ms' => 1000,
        'max_events' => 1000000,
        'event_url' => null,
        'fallback' => null,
        'logger' => null,
    ];

    const APPEND = <<<'LUA'
-- KEYS: stream, envelopes, meta. ARGV: max_events, envelope key, envelope, now, visitors...
if redis.call('XLEN', KEYS[1]) + #ARGV - 4 > tonumber(ARGV[1]) then
  return -1
end
redis.call('HSETNX', KEYS[3], 'format', 'xpevents-spool')
redis.call('HSETNX', KEYS[3], 'schema_version', '1')
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
local total = 0
for i = 5, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[2], 'v', ARGV[i], 't', ARGV[4], 'a', '0', 'f', '')
  total = total + #ARGV[i]
end
redis.call('HINCRBY', KEYS[3], 'bytes', total)
return #ARGV - 4
LUA;

    /** @var array */
    private $options;
    /** @var array host, port, password, db, stream */
    private $target;
    /** @var \Redis|null */
    private $redis = null;
    /** @var string|null */
    private $sha = null;
    /** @var float microtime(true) before which Redis is not tried again */
    private $downUntil = 0.0;
    /** @var array envelope => key, for the envelopes seen by this process */
    private $keys = [];

    /** @var string|null "redis", "fallback:<outcome>", "dropped" */
    public $lastOutcome = null;
    /** @var string|null the last Redis error */
    public $lastError = null;

    public function __construct(array $options = [])
    {
        $unknown = array_diff(array_keys($options), array_keys(self::DEFAULTS));
        if ($unknown) {
            throw new \InvalidArgumentException(
                'RedisSpoolEventDispatcher: unknown option(s) ' . implode(', ', $unknown)
                . '; known: ' . implode(', ', array_keys(self::DEFAULTS))
            );
        }
        $this->options = $options + self::DEFAULTS;
        $this->target = self::parseUrl($this->options['redis_url']);
    }

    /** host, port, password, db and stream of a redis:// URL. */
    public static function parseUrl($url)
    {
        $parts = parse_url($url);
        if ($parts === false || ($parts['scheme'] ?? '') !== 'redis') {
            throw new \InvalidArgumentException("redis_url: expected redis://host:port/db?stream=NAME, got $url");
        }
        parse_str($parts['query'] ?? '', $query);
        return [
            'host' => $parts['host'] ?? '127.0.0.1',
            'port' => (int) ($parts['port'] ?? 6379),
            'password' => isset($parts['pass']) ? urldecode($parts['pass']) : null,
            'db' => (int) trim($parts['path'] ?? '/0', '/'),
            'stream' => $query['stream'] ?? 'xpevents',
        ];
    }

    public function dispatchEvent(LogEvent $event)
    {
        $params = $event->getParams();
        $visitors = [];
        foreach ((array) ($params['visitors'] ?? []) as $visitor) {
            $visitors[] = json_encode($visitor);
        }
        $head = $params;
        unset($head['visitors']);
        $head['visitors'] = [];
        $headJson = json_encode($head);
        if ($headJson === false || in_array(false, $visitors, true)) {
            $this->lastOutcome = 'dropped';
            $this->log('error', 'event params are not JSON-serialisable: ' . json_last_error_msg());
            return;
        }
        if ($visitors && $this->append($event, $headJson, $visitors)) {
            $this->lastOutcome = 'redis';
            return;
        }
        $this->lastOutcome = 'fallback:' . $this->fallback($event);
    }

    /** True once Redis holds every visitor; false (logged) when the fallback must send. */
    private function append(LogEvent $event, $headJson, array $visitors)
    {
        if (microtime(true) < $this->downUntil) {
            return false;
        }
        $url = $this->options['event_url'] ?? $event->getUrl();
        $envelope = 'B' . $url . "\n" . $headJson;
        $key = $this->keys[$envelope] ?? ($this->keys[$envelope] = self::envelopeKey($envelope));
        $stream = $this->target['stream'];
        $args = array_merge(
            [$stream, "$stream:envelopes", "$stream:meta", (string) $this->options['max_events'],
             $key, $envelope, sprintf('%.6F', microtime(true))],
            $visitors
        );
        try {
            $redis = $this->connection();
            $result = $redis->evalSha($this->sha, $args, 3);
            if ($result === false && stripos((string) $redis->getLastError(), 'NOSCRIPT') !== false) {
                $redis->clearLastError();
                $result = $redis->eval(self::APPEND, $args, 3);
            }
        } catch (\RedisException $exc) {
            return $this->failed('Redis unavailable (' . $exc->getMessage() . ')');
        }
        if ($result === -1) {
            return $this->failed("Redis stream $stream holds {$this->options['max_events']} entries or more (is xpevents forward running?)");
        }
        if (!is_int($result) || $result !== count($visitors)) {
            return $this->failed('Redis refused the append: ' . $this->redis->getLastError());
        }
        return true;
    }

    /** The key an envelope is interned under: BLAKE2b-128 in hex, as xpevents' own. */
    private static function envelopeKey($envelope)
    {
        if (function_exists('sodium_crypto_generichash')) {
            return bin2hex(sodium_crypto_generichash($envelope, '', 16));
        }
        return 'sha256-' . hash('sha256', $envelope); // any key unique to the envelope will do
    }

    private function connection()
    {
        if ($this->redis === null) {
            $t = $this->target;
            $redis = new \Redis();
            $redis->pconnect($t['host'], $t['port'], $this->options['connect_timeout_ms'] / 1000, 'xpevents-' . $t['stream'],
                0, $this->options['read_timeout_ms'] / 1000);
            if ($t['password'] !== null) {
                $redis->auth($t['password']);
            }
            if ($t['db']) {
                $redis->select($t['db']);
            }
            $this->sha = sha1(self::APPEND);
            $this->redis = $redis;
        }
        return $this->redis;
    }

    private function failed($message)
    {
        $this->lastError = $message;
        $this->log('warning', "$message; sending through the fallback");
        if ($this->redis !== null) {
            try {
                $this->redis->close();
            } catch (\RedisException $ignored) {
            }
            $this->redis = null;
        }
        $this->downUntil = microtime(true) + $this->options['retry_after_ms'] / 1000;
        return false;
    }

    /** The fallback dispatcher's outcome, or the SDK's own synchronous POST's. */
    private function fallback(LogEvent $event)
    {
        $fallback = $this->options['fallback'];
        if ($fallback !== null) {
            $fallback->dispatchEvent($event);
            return property_exists($fallback, 'lastOutcome') ? (string) $fallback->lastOutcome : 'sent';
        }
        $headers = ['Expect:'];
        foreach ((array) $event->getHeaders() as $name => $value) {
            $headers[] = "$name: $value";
        }
        $curl = curl_init($event->getUrl());
        curl_setopt_array($curl, [
            CURLOPT_CUSTOMREQUEST => $event->getHttpVerb(),
            CURLOPT_POSTFIELDS => json_encode($event->getParams()),
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_TIMEOUT_MS => 10000,
        ]);
        $ok = curl_exec($curl) !== false;
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        curl_close($curl);
        if ($ok && $status >= 200 && $status < 300) {
            return 'direct';
        }
        $this->log('error', "direct event request failed: HTTP $status");
        return 'failed';
    }

    private function log($level, $message)
    {
        if ($this->options['logger'] !== null) {
            call_user_func($this->options['logger'], $level, $message);
        } else {
            error_log("xpevents RedisSpoolEventDispatcher [$level] $message");
        }
    }
}
