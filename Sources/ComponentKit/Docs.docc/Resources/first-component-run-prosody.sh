# Terminal 2: the same host, now against Prosody.
swift run greeter-host prosody.toml
# … info ComponentKit : component.hostname=greeter.localhost … hostname bound

# Terminal 3: alice writes to the greeter and reads its answer (slixmpp; Debian: python3-slixmpp).
python3 scripts/say.py alice@localhost alice-password greeter.localhost "Alice"
# greeter.localhost: Hello, Alice! (greeting #1)
