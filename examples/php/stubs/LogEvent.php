<?php
/**
 * Minimal stand-in for the PHP SDK's Optimizely\Event\LogEvent (optimizely/optimizely-sdk),
 * with the same name, constructor and getters, so the example runs without Composer.
 * In an application, use the SDK's own class instead of this file.
 */

namespace Optimizely\Event;

class LogEvent
{
    /** @var string */
    private $_url;
    /** @var array */
    private $_params;
    /** @var string */
    private $_httpVerb;
    /** @var array */
    private $_headers;

    public function __construct($url, $params, $httpVerb, $headers)
    {
        $this->_url = $url;
        $this->_params = $params;
        $this->_httpVerb = $httpVerb;
        $this->_headers = $headers;
    }

    public function getUrl()
    {
        return $this->_url;
    }

    public function getParams()
    {
        return $this->_params;
    }

    public function getHttpVerb()
    {
        return $this->_httpVerb;
    }

    public function getHeaders()
    {
        return $this->_headers;
    }
}
