"""slixmpp ComponentXMPP run by component-host's `external` plugin (the host's tests).

Reads what the host passes to a supervised command:
    COMPONENT_HOSTNAME  the hostname to serve
    COMPONENT_LISTEN    the host's local XEP-0114 listener, HOST:PORT
    COMPONENT_SECRET    the XEP-0114 secret

Echoes every <message/> with a body (same id, from and to swapped); for the body "iq" it
also sends the sender an XEP-0199 ping IQ with id "c2u-<message id>"; answers disco#info
with its own identity (name "slixmpp gateway"). Prints one line when connected.
"""
import logging
import os
from xml.etree import ElementTree as ET

from slixmpp.componentxmpp import ComponentXMPP


class Echo(ComponentXMPP):
    def __init__(self, hostname, secret, host, port):
        super().__init__(hostname, secret, host, port)
        self.register_plugin("xep_0030")
        self["xep_0030"].add_identity(category="gateway", itype="xmpp", name="slixmpp gateway", jid=hostname)
        self.add_event_handler("message", self.echo)
        self.add_event_handler("session_start", lambda _: print("slixmpp-external: connected", flush=True))

    def echo(self, message):
        if message["type"] == "error" or not message["body"]:
            return
        reply = self.make_message(mto=message["from"], mfrom=message["to"], mbody=message["body"],
                                  mtype=message["type"])
        reply["id"] = message["id"]
        reply.send()
        if message["body"] == "iq":
            iq = self.make_iq_get(ito=message["from"], ifrom=message["to"])
            iq["id"] = "c2u-" + message["id"]
            iq.append(ET.Element("{urn:xmpp:ping}ping"))
            iq.send(callback=lambda _: None)


def main():
    logging.basicConfig(level=logging.ERROR)
    hostname = os.environ["COMPONENT_HOSTNAME"]
    host, port = os.environ["COMPONENT_LISTEN"].rsplit(":", 1)
    secret = os.environ["COMPONENT_SECRET"]
    echo = Echo(hostname, secret, host.strip("[]"), int(port))
    echo.connect()
    echo.loop.run_forever()


if __name__ == "__main__":
    main()
