<?php
/**
 * Dispatch N impression events the way the Optimizely PHP SDK does (one LogEvent per
 * activate(), dispatched synchronously in the request), through RelayEventDispatcher
 * or, with --mode=direct, as the SDK's default dispatcher does: a synchronous POST to
 * the event's URL. Prints a JSON summary on stdout (used by the tests and the bench).
 *
 *   php dispatch_events.php --relay=http://127.0.0.1:8787 \
 *       --original=http://127.0.0.1:8788/v1/events --count=100 [--token=T]
 *       [--timeout-ms=100] [--connect-timeout-ms=100] [--fallback=URL|none]
 *       [--mode=relay|direct] [--prefix=php] [--eu]
 *
 * --original is the URL the events are built for (the SDK uses the Event API's URL;
 * tests use a local collector's so that nothing ever leaves the machine). --fallback is
 * the dispatcher's fallback_url (default: the event's URL; "none": no direct send).
 */

require __DIR__ . '/stubs/LogEvent.php';
require __DIR__ . '/stubs/EventDispatcherInterface.php';
require __DIR__ . '/RelayEventDispatcher.php';

use Optimizely\Event\LogEvent;
use Xpevents\RelayEventDispatcher;

$opts = getopt('', [
    'relay:', 'original:', 'count:', 'token:', 'timeout-ms:', 'connect-timeout-ms:', 'fallback:',
    'mode:', 'prefix:', 'eu',
]);
$relay = $opts['relay'] ?? 'http://127.0.0.1:8787';
$original = $opts['original'] ?? null;
$count = (int) ($opts['count'] ?? 10);
$mode = $opts['mode'] ?? 'relay';
$prefix = $opts['prefix'] ?? 'php';
if ($original === null) {
    fwrite(STDERR, "--original=URL is required\n");
    exit(2);
}

function uuid4()
{
    $b = random_bytes(16);
    $b[6] = chr((ord($b[6]) & 0x0f) | 0x40);
    $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
    $h = bin2hex($b);
    return substr($h, 0, 8) . '-' . substr($h, 8, 4) . '-' . substr($h, 12, 4) . '-'
        . substr($h, 16, 4) . '-' . substr($h, 20, 12);
}

function impression($url, $userId, $uuid)
{
    $params = [
        'account_id' => '10367498574',
        'project_id' => '20224828075',
        'revision' => '241',
        'client_name' => 'php-sdk',
        'client_version' => '4.0.1',
        'anonymize_ip' => true,
        'enrich_decisions' => true,
        'visitors' => [[
            'snapshots' => [[
                'decisions' => [[
                    'campaign_id' => '21000015638',
                    'experiment_id' => '21000014521',
                    'variation_id' => '21000016755',
                    'metadata' => [
                        'flag_key' => '',
                        'rule_key' => 'checkout_button_color',
                        'rule_type' => 'experiment',
                        'variation_key' => 'control',
                        'enabled' => true,
                    ],
                ]],
                'events' => [[
                    'entity_id' => '21000015638',
                    'timestamp' => (int) round(microtime(true) * 1000),
                    'key' => 'campaign_activated',
                    'uuid' => $uuid,
                ]],
            ]],
            'visitor_id' => $userId,
            'attributes' => [[
                'entity_id' => '$opt_bot_filtering',
                'key' => '$opt_bot_filtering',
                'type' => 'custom',
                'value' => true,
            ]],
        ]],
    ];
    return new LogEvent($url, $params, 'POST', ['Content-Type' => 'application/json']);
}

/** The SDK's default dispatcher: a synchronous POST to the event's URL. */
function dispatchDirect(LogEvent $event)
{
    $curl = curl_init($event->getUrl());
    $headers = ['Expect:'];
    foreach ($event->getHeaders() as $name => $value) {
        $headers[] = "$name: $value";
    }
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => json_encode($event->getParams()),
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT_MS => 10000,
        CURLOPT_NOSIGNAL => true,
    ]);
    $ok = curl_exec($curl) !== false;
    $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    curl_close($curl);
    return $ok && $status >= 200 && $status < 300 ? 'direct' : 'failed';
}

$fallback = $opts['fallback'] ?? null;
$dispatcher = new RelayEventDispatcher([
    'relay_url' => $relay,
    'timeout_ms' => (int) ($opts['timeout-ms'] ?? 100),
    'connect_timeout_ms' => isset($opts['connect-timeout-ms']) ? (int) $opts['connect-timeout-ms'] : null,
    'token' => $opts['token'] ?? null,
    'fallback_url' => $fallback === 'none' ? false : $fallback,
    'fallback_timeout_ms' => 10000,
    'logger' => function ($level, $message) {
        fwrite(STDERR, "[$level] $message\n");
    },
]);

$outcomes = [];
$uuids = [];
$latencies = [];
$started = microtime(true);
for ($i = 0; $i < $count; $i++) {
    $uuid = uuid4();
    $event = impression($original, "$prefix-user-$i", $uuid);
    $t0 = microtime(true);
    if ($mode === 'direct') {
        $outcome = dispatchDirect($event);
    } else {
        $dispatcher->dispatchEvent($event);
        $outcome = $dispatcher->lastOutcome;
    }
    $latencies[] = microtime(true) - $t0;
    $outcomes[$outcome] = ($outcomes[$outcome] ?? 0) + 1;
    $uuids[] = ['uuid' => $uuid, 'outcome' => $outcome];
}
$elapsed = microtime(true) - $started;
sort($latencies);
echo json_encode([
    'mode' => $mode,
    'count' => $count,
    'outcomes' => $outcomes,
    'events' => $uuids,
    'seconds' => $elapsed,
    'per_event_ms' => $count ? 1000 * $elapsed / $count : 0,
    'p50_ms' => $count ? 1000 * $latencies[intdiv($count, 2)] : 0,
    'p99_ms' => $count ? 1000 * $latencies[min($count - 1, (int) floor($count * 0.99))] : 0,
]), "\n";
