<?php
/**
 * Minimal stand-in for the PHP SDK's Optimizely\Event\Dispatcher\EventDispatcherInterface.
 * In an application, the SDK provides it (composer require optimizely/optimizely-sdk).
 */

namespace Optimizely\Event\Dispatcher;

use Optimizely\Event\LogEvent;

interface EventDispatcherInterface
{
    public function dispatchEvent(LogEvent $event);
}
