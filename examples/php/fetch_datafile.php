<?php
/**
 * Fetch a datafile the way the Optimizely PHP SDK's HTTPProjectConfigManager does, once
 * per "PHP request" (a fresh manager each time: PHP keeps nothing between requests),
 * and print a JSON summary on stdout (used by the tests and bench/datafile.py).
 *
 * With the real SDK, point the manager at the relay's datafile cache with a URL
 * template (the PHP SDK fills it with sprintf, so the placeholder is %s):
 *
 *   $manager = new \Optimizely\ProjectConfigManager\HTTPProjectConfigManager(
 *       $sdkKey, null, 'http://127.0.0.1:8787/datafiles/%s.json');
 *   $optimizely = new \Optimizely\Optimizely(null, null, null, null, false, null, $manager);
 *
 *   php fetch_datafile.php --sdk-key=KEY \
 *       --url-template=http://127.0.0.1:8787/datafiles/%s.json [--count=N]
 *
 * DatafileFetcher below is what the SDK's manager does on construction (fetchOnInit):
 * one GET of sprintf($urlTemplate, $sdkKey), with If-Modified-Since once it has seen a
 * Last-Modified, a 10 s timeout; 304 keeps the config, 2xx replaces it. It uses curl
 * because the SDK's Guzzle is not installed here.
 */

namespace Xpevents;

class DatafileFetcher
{
    const TIMEOUT = 10;

    private $url;
    private $lastModified = null;
    public $datafile = null;
    public $status = 0;

    public function __construct($sdkKey, $urlTemplate)
    {
        $this->url = sprintf($urlTemplate, $sdkKey);
    }

    /** One fetch; returns whether a new datafile arrived. */
    public function fetch()
    {
        $headers = [];
        if ($this->lastModified !== null) {
            $headers[] = 'If-Modified-Since: ' . $this->lastModified;
        }
        $lastModified = null;
        $curl = curl_init($this->url);
        curl_setopt_array($curl, [
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_TIMEOUT => self::TIMEOUT,
            CURLOPT_CONNECTTIMEOUT => self::TIMEOUT,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_HEADERFUNCTION => function ($c, $line) use (&$lastModified) {
                if (stripos($line, 'last-modified:') === 0) {
                    $lastModified = trim(substr($line, strlen('last-modified:')));
                }
                return strlen($line);
            },
        ]);
        $body = curl_exec($curl);
        $this->status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        curl_close($curl);
        if ($body === false || $this->status === 304) {
            return false;
        }
        if ($this->status < 200 || $this->status >= 300) {
            return false;
        }
        $decoded = json_decode($body, true);
        if (!is_array($decoded)) {
            return false;
        }
        if ($lastModified !== null) {
            $this->lastModified = $lastModified;
        }
        $this->datafile = $decoded;
        return true;
    }
}

$opts = getopt('', ['sdk-key:', 'url-template:', 'count:', 'conditional']);
$sdkKey = $opts['sdk-key'] ?? null;
$template = $opts['url-template'] ?? 'https://cdn.optimizely.com/datafiles/%s.json';
$count = (int) ($opts['count'] ?? 1);
if ($sdkKey === null) {
    fwrite(STDERR, "--sdk-key=KEY is required\n");
    exit(2);
}

$latencies = [];
$statuses = [];
$revisions = [];
$fetcher = null;
for ($i = 0; $i < $count; $i++) {
    $t0 = microtime(true);
    // a new PHP request: a new manager, unless --conditional keeps one (If-Modified-Since)
    if ($fetcher === null || !isset($opts['conditional'])) {
        $fetcher = new DatafileFetcher($sdkKey, $template);
    }
    $fetcher->fetch();
    $latencies[] = microtime(true) - $t0;
    $statuses[$fetcher->status] = ($statuses[$fetcher->status] ?? 0) + 1;
    if ($fetcher->datafile !== null) {
        $revision = $fetcher->datafile['revision'] ?? null;
        $revisions[$revision] = ($revisions[$revision] ?? 0) + 1;
    }
}
sort($latencies);
$n = count($latencies);
echo json_encode([
    'url' => sprintf($template, $sdkKey),
    'count' => $n,
    'statuses' => $statuses,
    'revisions' => $revisions,
    'p50_ms' => $n ? $latencies[(int) floor(($n - 1) * 0.5)] * 1000 : null,
    'p99_ms' => $n ? $latencies[(int) floor(($n - 1) * 0.99)] * 1000 : null,
    'mean_ms' => $n ? array_sum($latencies) / $n * 1000 : null,
]) . "\n";
