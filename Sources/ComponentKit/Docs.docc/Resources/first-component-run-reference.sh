# Terminal 2: the host, with the greeter bound to greeter.component.localhost.
swift run greeter-host reference-server.toml
# … info greeter-host: … [ComponentHost] component host starting
# … info greeter-host: admin.socket=/run/user/1000/component-host/admin.sock [ComponentHost] admin socket listening
# … info greeter-host: … sasl.mechanism=SCRAM-SHA-256-PLUS tls.version=TLSv1.3 [ComponentKit] component stream negotiated
# … info greeter-host: component.hostname=greeter.component.localhost … [ComponentKit] hostname bound

# Terminal 3: ask the running host what it serves, through its admin socket.
swift run --package-path "$SDK" component-host status --config reference-server.toml
# server:     127.0.0.1:5270 (domain localhost)
# connected:  yes
# protocol:   XEP-0225
# tls:        TLSv1.3
# sasl:       SCRAM-SHA-256-PLUS
#
# HOSTNAME                     PLUGIN   STATE  IN  OUT  ORIGIN         NOTE
# greeter.component.localhost  greeter  bound  0   0    configuration

# Terminal 2: Control-C. The host unbinds the hostname and closes the stream:
# … [ComponentKit] hostname unbound
# … [ComponentHost] component host stopped
# Leave the reference server running only if you want to come back to it; Control-C stops it too.
