"""slixmpp XEP-0114 echo component: answers every <message/> that has a body with the
same body and id, from and to swapped.

    python3 slixmpp_echo.py HOST PORT HOSTNAME SECRET
"""
import logging
import sys

from slixmpp.componentxmpp import ComponentXMPP


class Echo(ComponentXMPP):
    def __init__(self, hostname, secret, host, port):
        super().__init__(hostname, secret, host, port)
        self.add_event_handler("message", self.echo)
        self.add_event_handler("session_start", lambda _: print("slixmpp-echo: connected", file=sys.stderr))

    def echo(self, message):
        if message["type"] == "error" or not message["body"]:
            return
        reply = self.make_message(mto=message["from"], mfrom=message["to"], mbody=message["body"],
                                  mtype=message["type"])
        reply["id"] = message["id"]
        reply.send()


def main():
    logging.basicConfig(level=logging.ERROR)
    host, port, hostname, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    echo = Echo(hostname, secret, host, port)
    echo.connect()
    echo.loop.run_forever()


if __name__ == "__main__":
    main()
