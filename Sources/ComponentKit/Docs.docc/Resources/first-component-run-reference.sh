# Terminal 2: the host, with the greeter bound to greeter.component.localhost.
swift run greeter-host reference-server.toml
# … info greeter-host : … connected … protocol=xep0225 … sasl=SCRAM-SHA-256-PLUS … tls=TLSv1.3
# … info ComponentKit : component.hostname=greeter.component.localhost … hostname bound

# Terminal 3: ask the running host what it serves, through its admin socket.
swift run --package-path "$SDK" component-host status --config reference-server.toml
# server      127.0.0.1:5270 (localhost)  connected
# protocol    xep0225  TLSv1.3  SCRAM-SHA-256-PLUS
# greeter.component.localhost  greeter  bound  in 0  out 0 …
