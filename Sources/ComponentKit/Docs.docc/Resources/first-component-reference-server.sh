# Terminal 1: the reference server, with its state (a development CA and certificate,
# a Cyrus sasldb) in run/reference. It prints the SASL password it generated.
mkdir -p run
swift run --package-path "$SDK" reference-server --legacy-port off --state-dir run/reference
# reference-server for localhost (DEVELOPMENT ONLY)
#   XEP-0225 port:  5270  (STARTTLS required)
#   XEP-0114 port:  off
#   CA certificate: run/reference/server-ca.pem
#   SASL identity:  component.localhost
#   SASL password:  eThZYLDSiyay88o97BdY
#   may bind:       component.localhost, *.component.localhost
#   XEP-0114:       legacy.localhost with secret DAZ5oZbwb9chNBeKuwXt

# Terminal 2: the password it printed, in a file only you can read.
(umask 077 && echo 'eThZYLDSiyay88o97BdY' > run/reference/password)
