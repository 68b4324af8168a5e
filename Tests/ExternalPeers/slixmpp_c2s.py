"""A slixmpp client (c2s) for the reference server's client port (its tests).

Reads:
    C2S_JID       the account's JID (a resource is optional)
    C2S_PASSWORD  its password
    C2S_PORT      the client port on 127.0.0.1
    C2S_CA        the CA certificate (PEM) the server's certificate chains to
    C2S_TO        where to send one chat message with the body "hello from slixmpp"
    C2S_MECHANISM the SASL mechanism to use (optional; slixmpp's choice otherwise)

Connects with STARTTLS (certificate verified against C2S_CA) and SASL, sends the message,
prints "slixmpp-c2s: bound <full JID>" and then "slixmpp-c2s: got <from> <body>" for each
message received, and exits 0 after the first one that is not an error (1 on failure).
"""
import asyncio
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP


class Client(ClientXMPP):
    def __init__(self, jid, password, to, mechanism):
        super().__init__(jid, password, sasl_mech=mechanism)
        self.to = to
        self.result = 1
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.message)
        self.add_event_handler("failed_all_auth", lambda _: self.finish(1, "authentication failed"))

    async def start(self, _):
        print("slixmpp-c2s: bound", self.boundjid.full, flush=True)
        self.send_presence()
        self.send_message(mto=self.to, mbody="hello from slixmpp", mtype="chat")

    def message(self, message):
        print("slixmpp-c2s: got", message["from"], message["type"], message["body"], flush=True)
        self.finish(1 if message["type"] == "error" else 0, None)

    def finish(self, code, why):
        if why:
            print("slixmpp-c2s:", why, flush=True)
        self.result = code
        self.disconnect()


def main():
    logging.basicConfig(level=getattr(logging, os.environ.get("C2S_LOG", "ERROR")))
    client = Client(
        os.environ["C2S_JID"], os.environ["C2S_PASSWORD"], os.environ["C2S_TO"], os.environ.get("C2S_MECHANISM") or None)
    client.ssl_context = ssl.create_default_context(cafile=os.environ["C2S_CA"])
    client.connect(("127.0.0.1", int(os.environ["C2S_PORT"])))
    client.add_event_handler("disconnected", lambda _: client.loop.stop())
    client.loop.call_later(20, lambda: client.finish(1, "timed out"))
    client.loop.run_forever()
    sys.exit(client.result)


if __name__ == "__main__":
    main()
