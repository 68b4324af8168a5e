# Prosody 0.12 from your distribution (Debian: apt-get install prosody), stopped: the
# tutorial runs its own instance on loopback ports 5322 and 5370.
mkdir -p run/prosody

# A self-signed certificate for the domain "localhost" (STARTTLS for users and the component).
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" \
    -keyout run/prosody/localhost.key -out run/prosody/localhost.crt

# The configuration, with absolute paths; the component's password (its component_secret).
sed -e "s|@STATE@|$PWD/run/prosody|g" -e "s|@SDK@|$SDK|g" prosody/prosody.cfg.lua > run/prosody/prosody.cfg.lua
(umask 077 && printf 'tutorial-only-change-me' > run/prosody/password)

# Terminal 1: Prosody, in the foreground, and a user to talk to the greeter.
prosody --config run/prosody/prosody.cfg.lua -F
# Terminal 3:
prosodyctl --config run/prosody/prosody.cfg.lua register alice localhost alice-password
