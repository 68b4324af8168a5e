#!/usr/bin/env python3
"""Sends one chat message as a user of Prosody and prints the first answer.

    python3 scripts/say.py alice@localhost PASSWORD greeter.localhost "Alice"

Needs slixmpp (Debian: python3-slixmpp). Connects to 127.0.0.1:5322 and trusts only the
tutorial's certificate (run/prosody/localhost.crt).
"""
import asyncio
import sys

import slixmpp


class Say(slixmpp.ClientXMPP):
    def __init__(self, jid, password, to, body):
        super().__init__(jid, password)
        self.to = slixmpp.JID(to)
        self.body = body
        self.answer = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.received)
        self.add_event_handler("message_error", self.refused)

    async def start(self, _event):
        self.send_presence()
        self.send_message(mto=self.to, mbody=self.body, mtype="chat")

    def received(self, message):
        if message["from"].bare == self.to.bare and not self.answer.done():
            self.answer.set_result(f"{message['from']}: {message['body']}")

    def refused(self, message):
        if not self.answer.done():
            self.answer.set_result(f"error from {message['from']}: {message['error']['condition']}")


async def main(jid, password, to, body):
    client = Say(jid, password, to, body)
    client.ca_certs = "run/prosody/localhost.crt"
    client.connect(("127.0.0.1", 5322))
    try:
        print(await asyncio.wait_for(client.answer, timeout=15))
    finally:
        client.disconnect()
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
