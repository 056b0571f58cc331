"""A Slack stand-in server on 127.0.0.1 for tests: Web API, file uploads, response_url, Socket Mode.

Point ``AsyncWebClient(token=..., base_url=slack.api_url)`` at it.  It checks tokens, required fields and
rate limits like Slack does (errors answered with HTTP 200 ``{"ok": false, "error": ...}``, rate limits
with HTTP 429 + ``Retry-After``), records everything, and can inject faults (HTTP 5xx, refused
connections).  Payload shapes and request signing live in ``tests/slack_signing.py``.

The parts: ``records`` (what is recorded, what Slack shows of text), ``limits`` (rate limits), ``core``
(state and message store), ``web_api`` (the methods), ``endpoints`` (HTTP), ``payloads`` (what Slack sends
the app), ``socket_mode`` (the websocket) and ``server`` (``SlackStandIn``: lifecycle and recordings).
"""

from tests.slack_standin.records import LIVE_TOKEN, Call, mrkdwn_texts, slack_shows
from tests.slack_standin.server import SlackStandIn

__all__ = ["LIVE_TOKEN", "Call", "SlackStandIn", "mrkdwn_texts", "slack_shows"]
