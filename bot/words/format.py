"""How a front end writes facts into its text: Slack's mrkdwn escapes them, the console shows them as they are, the
web page escapes them as HTML.

Slack parses `<!channel>`, `<@U…>`, `<#C…>` and `<https://…|label>` in message text and mrkdwn, even inside code
spans and blocks, so every string that did not come from trainbot itself (output folders, overrides, log lines,
error text) goes through `Format.text`, `Format.code` or `Format.block` on its way into a Slack message. Slack's
rule (api.slack.com "Formatting text for app surfaces"): escape `&`, `<` and `>` as `&amp;`, `&lt;`, `&gt;`; it
shows them as the characters again, in code too.
"""

from __future__ import annotations

import html

GRAVE_LOOKALIKE = "ˋ"  # U+02CB: a typed backtick would end the code span or block it sits in


def escape(text: str) -> str:
    """Slack mrkdwn text that shows `text` as typed, with no live mention or link in it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Format:
    """Plain text (the console, the HTTP API): facts as they are, with no mrkdwn at all."""

    def text(self, fact: object) -> str:
        return str(fact)

    def code(self, fact: object) -> str:
        return str(fact)

    def block(self, fact: object) -> str:
        return f"\n{fact}\n"

    def bold(self, words: str) -> str:
        """Words trainbot wrote, stressed where the front end can (never a fact: those go through `text`)."""
        return words

    def mention(self, user_id: str) -> str:
        """A Slack user id: a live mention in Slack, the id itself elsewhere."""
        return user_id


class SlackFormat(Format):
    """Slack mrkdwn: each fact escaped, and a backtick in it can't close the code it is shown in."""

    def text(self, fact: object) -> str:
        return escape(str(fact))

    def code(self, fact: object) -> str:
        return f"`{escape(str(fact)).replace('`', GRAVE_LOOKALIKE)}`"

    def block(self, fact: object) -> str:
        return f"```{escape(str(fact)).replace('`', GRAVE_LOOKALIKE)}```"

    def bold(self, words: str) -> str:
        return f"*{words}*"

    def mention(self, user_id: str) -> str:
        return f"<@{user_id}>"


class HtmlFormat(Format):
    """HTML for the web page: each fact escaped; the words around them are trainbot's own."""

    def text(self, fact: object) -> str:
        return html.escape(str(fact))

    def code(self, fact: object) -> str:
        return f"<code>{html.escape(str(fact))}</code>"

    def block(self, fact: object) -> str:
        return f"<pre>{html.escape(str(fact))}</pre>"

    def bold(self, words: str) -> str:
        return f"<strong>{words}</strong>"

    def mention(self, user_id: str) -> str:
        return html.escape(user_id)


PLAIN = Format()
SLACK = SlackFormat()
HTML = HtmlFormat()
