"""The ack-latency baseline: Bolt's AsyncApp whose /train handler only acks, served over HTTP like trainbot's.

python -m bench.bare_bolt PORT SLACK_API_URL [MODE]   (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET from the environment)
MODE `inline` (as trainbot runs Bolt: the answer goes when the listener returns) or `default` (Bolt's default:
the listener runs in a task while Bolt polls for its ack every 10 ms).
"""

from __future__ import annotations

import os
import sys

from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient


def main(port: int, api_url: str, mode: str) -> None:
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_url)
    app = AsyncApp(
        client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"], process_before_response=mode == "inline"
    )

    async def only_ack(ack: AsyncAck) -> None:
        await ack()

    app.command("/train")(only_ack)
    web.run_app(app.web_app(path="/slack/events"), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "inline")
