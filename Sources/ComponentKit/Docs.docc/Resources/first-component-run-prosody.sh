# Terminal 2: the same host, now against Prosody (no -PLUS mechanism on Prosody 0.12).
swift run greeter-host prosody.toml
# … info greeter-host: … sasl.mechanism=SCRAM-SHA-256 tls.version=TLSv1.3 [ComponentKit] component stream negotiated
# … info greeter-host: component.hostname=greeter.localhost … [ComponentKit] hostname bound

# Terminal 3: alice writes to the greeter and reads its answer (slixmpp; Debian: python3-slixmpp).
python3 scripts/say.py alice@localhost alice-password greeter.localhost "Alice"
# greeter.localhost: Hello, Alice! (greeting #1)
python3 scripts/say.py alice@localhost alice-password greeter.localhost "again"
# greeter.localhost: Hello, again! (greeting #2)

# Control-C in terminals 2 and 1 stops the host, then Prosody.
